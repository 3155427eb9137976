"""Shadow trials: a kept challenger decides live events beside the champion; only the champion's decisions act.

events.py   generated live events that follow the sealed holdout in time, and their delayed outcomes
store.py    shadow.duckdb: trials, every decision of both policies, quarantined rows, outcomes as they arrive
trial.py    start a trial (contract check, quarantine, both policies decide in the sandbox) and join outcomes
report.py   compare the two on the labeled events and say passed, failed or pending
"""
