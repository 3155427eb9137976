"""Shadow trials: a kept challenger decides live events beside the champion; only the champion's decisions act.

events.py   generated live events that follow the sealed holdout in time, and their delayed outcomes
store.py    shadow.duckdb: trials, every decision of both policies, quarantined rows, outcomes as they arrive
trial.py    start a trial (contract check, quarantine, both policies decide, the ledger entry)
deciding.py how a trial's policies decide: fitted on train, batches reading the history serve would give them
outcomes.py join a batch of outcomes as they arrive
report.py   compare the two on the labeled events and say passed, failed or pending
"""
