"""What talks to a language model besides the proposers: token usage and its price (`model_usage`) and the broker
that answers a task-agent policy's questions (`task_agent`)."""
