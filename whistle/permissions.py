"""What a user may be allowed to do: one word per permission. Which roles hold each, and the
area rules that narrow it per case, are in api/access.py; the step catalogue
(whistle/steps.py) names the permission each step needs."""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    PUBLIC = "public"  # no sign-in: health, sign-in itself
    SELF = "self"  # one's own account and tokens
    REFERENCE_READ = "reference.read"
    REFERENCE_WRITE = "reference.write"
    ROUTING_PREVIEW = "routing.preview"
    CASE_OPEN = "case.open"
    CASE_LIST = "case.list"
    CASE_READ = "case.read"
    CASE_COORDINATE = "case.coordinate"  # summon, extensions, re-dispatch, outcome, close…
    CASE_ADD_FACT = "case.add_fact"
    CASE_TAKE_OVER = "case.take_over"
    SUMMONS_ACT = "summons.act"  # report in, sign off, return, ask for more time
    INBOX_READ = "inbox.read"
    AUDIT_READ = "audit.read"
    USERS_MANAGE = "users.manage"
    CHANNELS_MANAGE = "channels.manage"  # notification channels and their deliveries
    DIGEST_READ = "digest.read"  # work-meeting digests of centres in one's area
