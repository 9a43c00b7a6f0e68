"""Documentation schemas of pipelines, opportunities and the pipeline board.

The sales service validates and shapes these payloads; the gateway passes
them through, so the schemas here document the contract (tests/test_api_contract.py
keeps them equal to the service's own schemas).
"""
from marshmallow import Schema, fields, validate

from gateway.schemas import PageQuery

STAGE_OUTCOMES = ("open", "won", "lost")
OPPORTUNITY_STATUS_FILTERS = ("open", "won", "lost", "closed")
OPPORTUNITY_SORTABLE = ("created_at", "expected_close_date", "amount")
# The list filters the gateway passes on to the sales service.
OPPORTUNITY_FILTERS = ("stage", "pipeline_id", "owner_id", "customer_id", "amount_min", "amount_max",
                       "close_from", "close_to", "status")

MONEY = {"example": "1234.50", "description": "A decimal string, at most the currency's decimals"}
UUID = {"format": "uuid"}


# --- pipelines -----------------------------------------------------------------

class StageRequest(Schema):
    key = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,49}$"),
                        metadata={"example": "needs_analysis", "description": "Unique within the pipeline"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    probability = fields.Integer(required=True, validate=validate.Range(min=0, max=100),
                                 metadata={"description": "Default win probability, percent"})
    outcome = fields.String(validate=validate.OneOf(STAGE_OUTCOMES), metadata={"description": "Default open"})


class PipelineCreateRequest(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    stages = fields.List(fields.Nested(StageRequest), required=True, validate=validate.Length(min=3, max=30),
                         metadata={"description": "In order; exactly one won and one lost stage, at least one open"})


class StageAddRequest(Schema):
    key = fields.String(required=True, validate=validate.Regexp(r"^[a-z][a-z0-9_]{0,49}$"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    probability = fields.Integer(required=True, validate=validate.Range(min=0, max=100))
    position = fields.Integer(validate=validate.Range(min=0), metadata={
        "description": "0-based place; the stages from there move one down. "
                       "Default: after the last open stage. Added stages are open stages."})


class StageResponse(Schema):
    id = fields.String(required=True, metadata=UUID)
    key = fields.String(required=True)
    name = fields.String(required=True)
    position = fields.Integer(required=True)
    probability = fields.Integer(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(STAGE_OUTCOMES))


class PipelineResponse(Schema):
    id = fields.String(required=True, metadata=UUID)
    name = fields.String(required=True)
    is_default = fields.Boolean(required=True)
    created_at = fields.DateTime()
    stages = fields.List(fields.Nested(StageResponse), required=True, metadata={"description": "In order"})


class PipelineList(Schema):
    items = fields.List(fields.Nested(PipelineResponse), required=True,
                        metadata={"description": "The default pipeline first, then by name"})


class BoardQuery(Schema):
    per_stage = fields.Integer(validate=validate.Range(min=0, max=100), metadata={
        "description": "How many opportunities each stage lists (default 20); counts and totals cover all"})


# --- opportunities -----------------------------------------------------------------

class OpportunityWritable(Schema):
    title = fields.String(validate=validate.Length(min=1, max=200))
    amount = fields.String(metadata=MONEY)
    currency = fields.String(metadata={"example": "CNY", "description": "ISO 4217"})
    expected_close_date = fields.Date(allow_none=True)
    probability = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=100), metadata={
        "description": "Percent. Default: the stage's. Set by hand it sticks across stage moves; null gives it "
                       "back to the stage"})
    source = fields.String(allow_none=True, validate=validate.Length(max=100))
    next_step = fields.String(allow_none=True, validate=validate.Length(max=500))


class OpportunityCreateRequest(OpportunityWritable):
    customer_id = fields.String(required=True, metadata={
        **UUID, "description": "An active customer (422 for an unknown or deleted one; a customer created a "
                               "moment ago may take a moment to be known to sales)"})
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    amount = fields.String(required=True, metadata=MONEY)
    currency = fields.String(required=True, metadata={"example": "CNY", "description": "ISO 4217"})
    owner_id = fields.String(allow_none=True, metadata={
        **UUID, "description": "Default: the caller. Sales own what they create; managers give to their team"})
    pipeline_id = fields.String(allow_none=True, metadata={**UUID, "description": "Default: the default pipeline"})
    stage = fields.String(allow_none=True, metadata={
        "description": "An open stage's key; default: the pipeline's first stage"})


class OpportunityUpdateRequest(OpportunityWritable):
    """Every field optional, at least one. The stage moves through POST /opportunities/{id}/stage;
    a won or lost opportunity is not changed (409) until reopened."""


class StageMoveRequest(Schema):
    stage = fields.String(required=True, metadata={"example": "proposal", "description": "The target stage's key"})
    note = fields.String(allow_none=True, validate=validate.Length(max=10000))
    lost_reason = fields.String(allow_none=True, validate=validate.Length(max=500), metadata={
        "description": "Required for a move to the lost stage, refused for any other"})


class OpportunityResponse(Schema):
    id = fields.String(required=True, metadata=UUID)
    customer_id = fields.String(required=True, metadata=UUID)
    pipeline_id = fields.String(required=True, metadata=UUID)
    stage_id = fields.String(required=True, metadata=UUID)
    stage = fields.String(required=True, metadata={"description": "The stage's key"})
    title = fields.String(required=True)
    amount = fields.String(required=True, metadata=MONEY)
    currency = fields.String(required=True)
    owner_id = fields.String(allow_none=True, metadata=UUID)
    owner_team_id = fields.String(allow_none=True)
    expected_close_date = fields.Date(allow_none=True)
    probability = fields.Integer(required=True)
    probability_overridden = fields.Boolean(required=True)
    source = fields.String(allow_none=True)
    next_step = fields.String(allow_none=True)
    lost_reason = fields.String(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(STAGE_OUTCOMES))
    stage_entered_at = fields.DateTime(required=True)
    closed_at = fields.DateTime(allow_none=True)
    created_by = fields.String(allow_none=True, metadata=UUID)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    version = fields.Integer(required=True)


class OpportunityPage(Schema):
    items = fields.List(fields.Nested(OpportunityResponse), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class OpportunityListQuery(PageQuery):
    stage = fields.String(metadata={"description": "A stage key, in any pipeline (with pipeline_id: in that one)"})
    pipeline_id = fields.String(metadata=UUID)
    owner_id = fields.String(metadata=UUID)
    customer_id = fields.String(metadata=UUID)
    amount_min = fields.String(metadata={**MONEY, "description": "Amount at least (any currency)"})
    amount_max = fields.String(metadata={**MONEY, "description": "Amount at most (any currency)"})
    close_from = fields.Date(metadata={"description": "Expected close on or after"})
    close_to = fields.Date(metadata={"description": "Expected close on or before"})
    status = fields.String(validate=validate.OneOf(OPPORTUNITY_STATUS_FILTERS),
                           metadata={"description": "closed: won or lost"})
    sort = fields.String(metadata={"example": "-amount", "description": "created_at (default -created_at), "
                                   "expected_close_date (undated last) or amount; prefix - for descending"})


class StageChangeResponse(Schema):
    id = fields.Integer(required=True)
    opportunity_id = fields.String(required=True, metadata=UUID)
    from_stage = fields.String(allow_none=True, metadata={"description": "null: the opportunity was created"})
    to_stage = fields.String(required=True)
    note = fields.String(allow_none=True)
    changed_by = fields.String(allow_none=True, metadata=UUID)
    changed_at = fields.DateTime(required=True)
    seconds_in_previous_stage = fields.Integer(allow_none=True)


class StageChangePage(Schema):
    items = fields.List(fields.Nested(StageChangeResponse), required=True, metadata={"description": "Newest first"})
    next_cursor = fields.String(allow_none=True, required=True)


# --- the board ---------------------------------------------------------------------

class BoardPipeline(Schema):
    id = fields.String(required=True, metadata=UUID)
    name = fields.String(required=True)


class BoardColumn(Schema):
    stage = fields.Nested(StageResponse, required=True)
    count = fields.Integer(required=True, metadata={"description": "Open opportunities the caller may see here"})
    totals = fields.Dict(keys=fields.String(), values=fields.String(), required=True, metadata={
        "description": "Total amount per currency", "example": {"CNY": "1200.00"}})
    opportunities = fields.List(fields.Nested(OpportunityResponse), required=True,
                                metadata={"description": "The first per_stage, soonest expected close first"})


class BoardResponse(Schema):
    pipeline = fields.Nested(BoardPipeline, required=True)
    stages = fields.List(fields.Nested(BoardColumn), required=True,
                         metadata={"description": "The open stages, in order"})
