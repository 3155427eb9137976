"""What a workspace remembers about its policies: a candidate's outcome (`experiment_record`), the stored decisions of
the champion, baseline and reference (`policy_state`), the keep transaction (`keep`) and what a stop left with its
repair (`recovery`), the workspace as verified once per session (`context`) and the policies a person can name
(`refs`)."""
