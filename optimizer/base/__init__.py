"""The lowest layer of `optimizer`: exception types (`errors`), crash points for tests (`faults`), deferred Ctrl-C
(`interrupts`), diff text (`diffs`) and the tunable-constant rewriter (`tunables`). It imports nothing else of the
project."""
