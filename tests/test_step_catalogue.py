"""The step catalogue (whistle/steps.py) is the one list of a case's human steps: every
Update of the case workflow is in it with the message its handler takes, and the API, the
pages and the audit each serve every row."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

from temporalio import workflow

from api.access import guard_of
from api.main import route_table
from api.steps import body_model
from api.web.i18n import gettext
from audit.timeline import STEP_ARGS
from whistle.steps import STEPS, Scope
from workflows.case import CaseWorkflow

CASE_PAGE = Path(__file__).resolve().parent.parent / "api" / "web" / "templates" / "case.html"


def test_every_update_but_opened_is_a_catalogued_step_taking_its_handlers_message():
    updates = set(workflow._Definition.from_class(CaseWorkflow).updates) - {"opened"}
    assert {s.update for s in STEPS} == updates
    for spec in STEPS:
        handler = getattr(CaseWorkflow, spec.update)
        assert typing.get_type_hints(handler)["step"] is spec.message, spec.update
        assert handler.__doc__, f"{spec.update}: the handler's docstring describes the route"


def test_every_step_has_its_route_guarded_by_its_permission():
    routes = route_table()
    for spec in STEPS:
        route = routes["POST", "/api/v1" + spec.route]
        guard = guard_of(route.dependant)
        assert guard is not None and guard.permission == spec.permission, spec.update
        assert route.description == inspect.getdoc(getattr(CaseWorkflow, spec.update))


def test_a_steps_body_is_its_message_without_what_the_server_fills_in():
    for spec in STEPS:
        fields = set(body_model(spec).model_fields)
        assert "actor" not in fields and fields == set(spec.body_fields), spec.update
        assert ("department" in fields) == (spec.scope == Scope.CASE
                                            and "department" in spec.message.model_fields)


def test_the_audit_and_the_pages_know_every_step():
    page = CASE_PAGE.read_text(encoding="utf-8")
    for spec in STEPS:
        assert STEP_ARGS[spec.update] is spec.message
        assert f'/{spec.path}"' in page, f"case.html has no form posting to {spec.path}"
        assert gettext("zh-CN", spec.label) != spec.label, f"no 中文 for {spec.label!r}"
