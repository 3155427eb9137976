"""The optimization loop: one experiment (`experiment`) in stages (`stages`), where candidates are evaluated
(`executors`), the session `run` and `try` judge in (`session`), the loop that proposes, judges and keeps (`run`),
and the bar a gain must clear now (`power`)."""
