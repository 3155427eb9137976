"""Re-deriving what the ledger recorded: the replay of kept experiments and shadow looks from the sealed data
(`replay`)."""
