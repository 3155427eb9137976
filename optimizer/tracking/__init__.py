"""MLflow as a view of the ledger: runs and tags (`runs`), the background recorder (`recorder`), the catch-up after
an outage (`sync`) and the model registry (`registry`, `registry_model`). Nothing here decides a verdict."""
