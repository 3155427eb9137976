"""Reports people look at: the run report (`ratchet report`), the audit document (`ratchet audit --html`) and the
history table (`ratchet history`). facts: the numbers; plots: matplotlib; html: the Jinja2 pages."""
