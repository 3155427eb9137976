"""A workspace's life events, each recorded in the ledger: its creation (`initialize`), a reseal of the holdout
(`reseal`), an approved settings change (`config_events`) and an upgrade of ratchet (`upgrade`)."""
