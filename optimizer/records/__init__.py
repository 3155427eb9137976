"""What a workspace remembers about its policies: a candidate's outcome (`experiment_record`), the stored decisions of
the champion, baseline and reference (`policy_state`), the keep transaction and its repair (`keep`), the workspace
as verified once per session (`context`) and the policies a person can name (`refs`)."""
