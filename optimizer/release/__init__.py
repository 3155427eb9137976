"""From a kept policy to production: shadow trials (`shadow`), promotion and rollback (`promotion`), and serving
decisions (`serve`, `serve_http`, `serve_rows`, `serve_run`, `serve_shadow`)."""
