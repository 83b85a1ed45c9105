"""What a reviewer reads: the pull-request report, the stale-lock check, the tolerance that
defines "the same number", and the model card."""
