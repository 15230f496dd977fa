"""Every side effect of a case: policy reads, deadline planning, read-model projection and
the notification outbox."""
