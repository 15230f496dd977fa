"""Message catalogues for the pages: zh-CN (the default) and en, read from the `.po` files
under `locale/` and compiled in memory at start-up, so a fresh clone needs no compile step.

msgids are English source text. Labels for domain codes (statuses, outcomes, roles, …)
live in `LABELS`, marked with `N_` so the catalogue test finds them."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
# The `lang` cookie's values → the catalogue folder (gettext's locale spelling).
LANGUAGES: dict[str, str] = {"zh-CN": "zh_CN", "en": "en"}
DEFAULT_LANG = "zh-CN"


def N_(message: str) -> str:  # noqa: N802 - gettext's conventional name
    """Marks a msgid for extraction; translated where it is shown."""
    return message


@lru_cache
def translations(lang: str) -> Translations:
    """The catalogue of `lang` (a key of LANGUAGES), compiled from its .po file."""
    po = LOCALE_DIR / LANGUAGES[lang] / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=LANGUAGES[lang])
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return Translations(mo)


def gettext(lang: str, message: str, **variables: object) -> str:
    """`message` in `lang`, with `%(name)s` placeholders filled from `variables`."""
    text = translations(lang).gettext(message)
    return text % variables if variables else text


# Domain codes → msgids. Codes are the English identifiers of shared/DOMAIN.md.
LABELS: dict[str, dict[str, str]] = {
    "role": {
        "coordinator": N_("Coordinator"), "department": N_("Department staff"),
        "grid_worker": N_("Grid worker"), "supervisor": N_("Supervisor"),
        "auditor": N_("Auditor"), "admin": N_("Administrator"),
    },
    "party_role": {
        "applicant": N_("Applicant"), "respondent": N_("Respondent"),
        "party": N_("Other party"),
    },
    "level": {
        "city": N_("City"), "county": N_("County"), "town": N_("Town"),
        "village": N_("Village"), "grid": N_("Grid"),
    },
    "status": {
        "open": N_("Open"), "awaiting_feedback": N_("Awaiting feedback"),
        "closed": N_("Closed"),
    },
    "summons": {
        "summoned": N_("Summoned"), "reported_in": N_("Reported in"),
        "signed_off": N_("Signed off"), "returned": N_("Returned"),
        "cancelled": N_("Cancelled"),
    },
    "outcome": {
        "mediated_agreement": N_("Mediated agreement"),
        "administrative_resolution": N_("Administrative resolution"),
        "referred_to_litigation": N_("Referred to litigation or arbitration"),
        "withdrawn": N_("Withdrawn"), "unresolved": N_("Unresolved"),
    },
    "satisfaction": {
        "satisfied": N_("Satisfied"), "basically_satisfied": N_("Basically satisfied"),
        "unsatisfied": N_("Unsatisfied"),
    },
    "extension": {
        "pending": N_("Extension pending"), "approved": N_("Extension approved"),
        "refused": N_("Extension refused"),
    },
    "ladder": {
        "remind": N_("Reminder"), "notify_supervisor": N_("Supervisor notified"),
        "raise": N_("Raised a level"), "unresolved_at_top": N_("Unresolved at the top"),
    },
    # Timeline steps, named as whistle/domain.py's CASE_LABELS_ZH names them (msgids of
    # their own: "Opened" the date and "Closed" the status read differently in Chinese).
    "event": {
        "opened": N_("Case opened"), "summoned": N_("Whistle blown"),
        "reported_in": N_("Report-in"), "signed_off": N_("Sign-off opinion"),
        "returned": N_("Summons returned"), "redispatched": N_("Re-dispatched"),
        "extension_requested": N_("Extension requested"),
        "extension_decided": N_("Extension decided"), "clock_warning": N_("Deadline warning"),
        "clock_missed": N_("Deadline missed"), "escalated": N_("Escalated"),
        "outcome": N_("Outcome"), "feedback": N_("Feedback"), "reopened": N_("Reopened"),
        "policy_applied": N_("New policy applied"), "fact_added": N_("Fact recorded"),
        "taken_over": N_("Taken over"), "closed": N_("Case closed and filed"),
        "needs_attention": N_("Needs attention"), "attention_resolved": N_("Resumed"),
        "deadlines_recomputed": N_("Deadlines recomputed"),
    },
    "close_reason": {
        "feedback": N_("Closed after feedback"),
        "unsatisfied": N_("Closed unsatisfied"), "no_feedback": N_("No feedback in time"),
        "withdrawn": N_("Withdrawn"), "closed_by_coordinator": N_("Closed by the coordinator"),
    },
    "source": {
        "walk_in": N_("Walk-in"), "phone": N_("Phone"), "grid_patrol": N_("Grid patrol"),
        "online": N_("Online"),
    },
    # Why the case engine refused a step (StepRejected codes in workflows/case.py).
    "rejected": {
        "case_closed": N_("The case is closed."),
        "wrong_case_status": N_("The case is not in a state that allows this step."),
        "not_summoned": N_("This department is not summoned to the case."),
        "wrong_summons_status": N_("The summons is not in a state that allows this step."),
        "already_summoned": N_("This department is already summoned."),
        "extension_pending": N_("An extension request is already pending."),
        "no_pending_extension": N_("There is no pending extension request."),
        "duplicate_department": N_("A department is listed twice."),
        "already_redispatched": N_("This summons was already re-dispatched."),
        "same_department": N_("Re-dispatch to another department."),
        "agreement_text_required": N_("A mediated agreement needs the agreement text."),
        "outcome_required": N_("Record the outcome first."),
        "already_taken_over": N_("The case is already taken over."),
        "policy_unchanged": N_("The policy has not changed."),
        "summonses_open": N_("Summonses are still open: every department must sign off "
                             "or return its summons first (a withdrawal ends the case now)."),
        "step_rejected": N_("The case engine refused this step."),
        "invalid_deadline": N_("The new deadline must be later than the current sign-off "
                               "deadline and than now."),
        "needs_attention": N_("The case needs attention: its departments are not summoned "
                              "yet. Retry its planning first."),
        "step_in_progress": N_("Another step of this case is being worked out; try again "
                               "shortly."),
        "planning_failed": N_("The deadlines could not be planned: the policy file or the "
                              "working-day calendar failed."),
        "nothing_to_retry": N_("The case does not need attention: there is nothing to "
                               "retry."),
        "nothing_provisional": N_("No running deadline of this case is provisional: there "
                                  "is nothing to recompute."),
        "deadlines_unchanged": N_("The provisional deadlines stay as they are: the calendar "
                                  "has not changed for the days they count over."),
    },
}


def label(lang: str, kind: str, code: str | None) -> str:
    """The label of a domain code in `lang`; the code itself when it has none."""
    if code is None:
        return ""
    msgid = LABELS.get(kind, {}).get(code)
    return gettext(lang, msgid) if msgid else code
