"""Request and response schemas (request bodies are validated with them; responses are built as plain
dicts on the hot path and these models document them in OpenAPI).

Item and category ids are int64 integers, except in an index version built from a dataset with string
ids (``index.labels``): there the service takes and returns the dataset's own ids, as strings, for each
view that had them (``app.ids``). Request bodies accept both forms; the served version decides."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.feedback import MAX_REQUEST_ID_CHARS
from core.types import Behavior

#: the values of core.types.Mode, as a Literal so OpenAPI lists them
ModeName = Literal["general", "diversity"]
#: ids are int64 everywhere (core.types); a larger JSON integer is a 422, not an overflow later
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
#: longest string id accepted in a body (a label of the dataset)
MAX_LABEL_CHARS = 512
#: an item or category id in a request: an int64, or the dataset's own string id (see the module docstring)
IdIn = Int64 | Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS)]
#: an id in an answer: an int64, or a string in a version built from string ids
IdOut = int | str
ID_DOC = "int64, or the dataset's own string id when the served version was built from string ids"
#: longest user id (body or header) accepted: stores key users by id, so ids must stay small
MAX_USER_ID_CHARS = 256
#: most events in one POST /feedback (more is a 413)
MAX_FEEDBACK_EVENTS = 1000
REQUEST_ID_DOC = (
    "Signed id of this answer (also the X-Request-Id header): post it back with the answer's "
    "impressions and clicks to POST /feedback."
)


class CandidateOut(BaseModel):
    item_id: IdOut = Field(description=f"Original item id ({ID_DOC}).")
    score: float = Field(
        description="Higher is closer: the similarity (diversity mode, one-channel mixes) or the fused "
        "reciprocal-rank score of a multi-channel general-mode mix."
    )
    attributes: dict[str, IdOut | None] = Field(
        description="Side attributes (category, shop...), -1 unknown; in a view with string ids, the "
        "dataset's own id and null unknown."
    )
    channels: list[str] | None = Field(
        default=None,
        description="General mode: the retrieval channel(s) that listed it (m2grl, cooc, popular, category_popular).",
    )
    title: str | None = Field(
        default=None,
        description="The catalogue's title, only with ?fields=title (null where the dataset has none).",
    )
    cold: bool = Field(
        default=False,
        description="True for a catalogue item without training behaviour, placed from its side views "
        "(category, shop) by build-index.",
    )


class I2IResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "trigger": 1193,
                "mode": "diversity",
                "variant": "control",
                "strategy": "metric",
                "index_version": "20240101T000000Z",
                "k": 2,
                "returned": 2,
                "exhausted": False,
                "excluded_categories": [3, 7],
                "candidates": [
                    {"item_id": 2355, "score": 0.91, "attributes": {"category": 5, "shop": 12}},
                    {"item_id": 1, "score": 0.88, "attributes": {"category": 9, "shop": 4}},
                ],
                "request_id": "Y29udHJvbHxkaXZlcnNpdHl8MTcwMDAwMDAwMHxhYmNkZWYwMTIzNDU.c2lnbmF0dXJl",
            }
        }
    )

    trigger: IdOut = Field(description=f"The trigger item ({ID_DOC}).")
    mode: ModeName
    variant: str
    strategy: Literal["metric", "filter"]
    index_version: str
    k: int = Field(description="Candidates asked for.")
    returned: int = Field(description="Candidates in the answer (< k only when exhausted).")
    exhausted: bool = Field(description="True when fewer than k candidates survive the exclusions.")
    excluded_categories: list[IdOut] = Field(description=f"Category ids ({ID_DOC}).")
    candidates: list[CandidateOut]
    request_id: str = Field(description=REQUEST_ID_DOC)


class BatchRequest(BaseModel):
    # strict: a JSON true or "5" is not the integer the schema documents (lax mode would coerce them)
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"example": {"item_ids": [1193, 661], "mode": "general", "k": 10}},
    )

    item_ids: list[IdIn] = Field(min_length=1, description=f"Trigger items (at most max_batch; {ID_DOC}).")
    mode: ModeName = "general"
    k: int | None = Field(default=None, ge=1, description="Candidates per trigger (default_k when omitted).")
    exclude_categories: list[IdIn] = Field(default_factory=list, description=f"Category ids ({ID_DOC}).")
    exclude_recent: bool = False


class BatchItem(BaseModel):
    trigger: IdOut = Field(description="The trigger as the request named it.")
    error: str | None = Field(default=None, description="'unknown_item' when the trigger is not indexed.")
    exhausted: bool = False
    candidates: list[CandidateOut] = Field(default_factory=list)


class BatchResponse(BaseModel):
    mode: ModeName
    variant: str
    strategy: Literal["metric", "filter"]
    index_version: str
    k: int
    results: list[BatchItem]
    request_id: str = Field(description=REQUEST_ID_DOC)


class U2IResponse(BaseModel):
    user_id: str | None
    triggers: list[IdOut] = Field(
        description=f"Recent items whose neighbours were merged (newest first; {ID_DOC})."
    )
    mode: ModeName
    variant: str
    strategy: Literal["metric", "filter"]
    index_version: str
    k: int
    returned: int
    exhausted: bool
    candidates: list[CandidateOut]
    request_id: str = Field(description=REQUEST_ID_DOC)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: IdIn = Field(description=f"The item ({ID_DOC}).")
    # strict mode would want an enum instance; the JSON string is validated against the values
    behavior: Behavior = Field(default=Behavior.VIEW, strict=False)
    timestamp: float | None = Field(
        default=None, allow_inf_nan=False, description="Unix seconds; now when omitted."
    )


class EventsRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "example": {
                "user_id": "42",
                "events": [{"item_id": 1193, "behavior": "view", "timestamp": 1.7e9}],
            }
        },
    )

    user_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_USER_ID_CHARS, description="Defaults to the user header."
    )
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventsResponse(BaseModel):
    user_id: str
    recorded: int
    unknown_items: list[IdOut] = Field(description="Items not in the served index (not recorded).")
    categories: list[IdOut] = Field(description=f"Categories now remembered for these events ({ID_DOC}).")


class FeedbackEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: IdIn = Field(description=f"A candidate of the answer named by request_id ({ID_DOC}).")
    kind: Literal["impression", "click"]
    timestamp: float | None = Field(
        default=None, allow_inf_nan=False, description="Unix seconds; now when omitted."
    )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "example": {
                "request_id": "Y29udHJvbHxnZW5lcmFsfDE3MDAwMDAwMDB8YWJjZGVmMDEyMzQ1.c2lnbmF0dXJl",
                "events": [
                    {"item_id": 2355, "kind": "impression", "timestamp": 1.7e9},
                    {"item_id": 2355, "kind": "click", "timestamp": 1.7e9 + 4},
                ],
            }
        },
    )

    request_id: str = Field(
        min_length=1, max_length=MAX_REQUEST_ID_CHARS, description="request_id of a retrieval answer."
    )
    events: list[FeedbackEvent] = Field(
        min_length=1, description=f"What the user saw and clicked (at most {MAX_FEEDBACK_EVENTS}, else 413)."
    )


class FeedbackResponse(BaseModel):
    variant: str = Field(description="Variant that served the answer (read from request_id).")
    mode: str
    impressions: int = Field(description="Impressions counted.")
    clicks: int = Field(description="Clicks counted.")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code: unknown_item, bad_request, not_ready, ...")
    detail: str
    allowed: object | None = Field(default=None, description="What would have been accepted.")


class ReloadResponse(BaseModel):
    result: Literal["success", "unchanged", "failure"]
    version: str | None
    previous: str | None
    detail: str = ""
