"""Custom search attributes every case keeps current, so the Temporal UI and
`temporal workflow list --query` can find cases.

They are not encrypted: codes and flags only, never a party's name or words.
"""

from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

STATUS = SearchAttributeKey.for_keyword("WhistleStatus")
LEVEL = SearchAttributeKey.for_keyword("WhistleLevel")
CATEGORY = SearchAttributeKey.for_keyword("WhistleCategory")
# Every node from the city down to the case's location: "in my jurisdiction and below"
# becomes `WhistleJurisdiction = 'xiaojinkou'`.
JURISDICTION = SearchAttributeKey.for_keyword_list("WhistleJurisdiction")
OVERDUE = SearchAttributeKey.for_bool("WhistleOverdue")
DEPARTMENTS = SearchAttributeKey.for_keyword_list("WhistleDepartments")

ALL = (STATUS, LEVEL, CATEGORY, JURISDICTION, OVERDUE, DEPARTMENTS)

_CLI_TYPE = {
    "KEYWORD": "Keyword",
    "KEYWORD_LIST": "KeywordList",
    "BOOL": "Bool",
}


def dev_server_args() -> list[str]:
    """`--search-attribute Name=Type` flags that register ALL on `temporal server start-dev`."""
    args: list[str] = []
    for key in ALL:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE[key.indexed_value_type.name]}"]
    return args


async def register(client: Client, namespace: str = "default") -> list[str]:
    """Register on `client`'s server every key of ALL it does not know yet; returns the
    names added. For servers not started with `dev_server_args()` (tests, a fresh cluster)."""
    try:
        known = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        have = set(known.custom_attributes) | set(known.system_attributes)
    except RPCError as e:
        if e.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        have = set()  # the time-skipping test server can add but not list
    missing = {k.name: k.indexed_value_type for k in ALL if k.name not in have}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
