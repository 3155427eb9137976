"""One workspace on disk: its file layout and git history (`layout`), its settings (`config`, `config_words`), the
runner lock (`runner`), the event history (`history`), the user's column names (`user_columns`) and approvers' names
(`approvers`)."""
