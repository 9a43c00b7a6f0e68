"""The gateway's routes for pipelines and opportunities (the sales service).

A mixin of GatewayService: the routes here use its dependencies
(``self.sales``, ``self.context``, ``self._users()``, ``self._once``).
The sales service validates input and applies record-level rules (who sees
which opportunity, who may reopen one); the gateway adds the owner's team,
which only it knows.
"""
from gateway import idempotency
from gateway.activity_routes import versioned
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api, etag, if_match_version, page_arguments
from gateway.pipeline_schemas import (
    OPPORTUNITY_FILTERS, BoardQuery, BoardResponse, OpportunityCreateRequest, OpportunityListQuery,
    OpportunityPage, OpportunityResponse, OpportunityUpdateRequest, PipelineCreateRequest, PipelineList,
    PipelineResponse, StageAddRequest, StageChangePage, StageMoveRequest,
)
from gateway.schemas import PageQuery



def _owner_id(body):
    return body.get("owner_id") if isinstance(body, dict) else None


def with_etag(record):
    return Reply(record, headers={"ETag": etag(record["version"])})


class PipelineRoutes:
    # --- pipelines -----------------------------------------------------------

    @api("GET", "/pipelines", allow=rule("pipelines", "read"), response=PipelineList, tags=("pipelines",),
         summary="The pipelines, each with its stages in order")
    def list_pipelines(self, request):
        return self.sales.list_pipelines()

    @api("GET", "/pipelines/<pipeline_id>", allow=rule("pipelines", "read"), response=PipelineResponse,
         tags=("pipelines",), summary="One pipeline")
    def get_pipeline(self, request, pipeline_id):
        return self.sales.get_pipeline(pipeline_id)

    @api("POST", "/pipelines", allow=rule("pipelines", "create"), body=PipelineCreateRequest, response=PipelineResponse,
         status=201, headers=(idempotency.HEADER,), tags=("pipelines",), summary="Create a pipeline",
         description="Exactly one won and one lost stage, at least one open stage, stage keys unique. "
                     "A second pipeline with the same name answers 409.")
    def create_pipeline(self, request, body):
        def create():
            pipeline = self.sales.create_pipeline(body)
            return Reply(pipeline, headers={"Location": f"{API_PREFIX}/pipelines/{pipeline['id']}"})
        return self._once(request, body, create)

    @api("POST", "/pipelines/<pipeline_id>/stages", allow=rule("pipelines", "update"), body=StageAddRequest,
         response=PipelineResponse, status=201, tags=("pipelines",), summary="Add an open stage at a position",
         description="Answers the whole pipeline. Opportunities keep their stages.")
    def add_pipeline_stage(self, request, pipeline_id, body):
        return self.sales.add_pipeline_stage(pipeline_id, body)

    @api("GET", "/pipelines/<pipeline_id>/board", allow=rule("pipelines", "read"), query=BoardQuery,
         response=BoardResponse, tags=("pipelines",),
         summary="The caller's open opportunities by stage: count, totals per currency, the first few")
    def pipeline_board(self, request, pipeline_id):
        query = {"per_stage": request.args["per_stage"]} if "per_stage" in request.args else {}
        return self.sales.pipeline_board(pipeline_id, query)

    # --- opportunities ---------------------------------------------------------

    @api("POST", "/opportunities", allow=rule("opportunities", "create"), body=OpportunityCreateRequest,
         response=OpportunityResponse,
         status=201, headers=(idempotency.HEADER,), tags=("opportunities",), summary="Create an opportunity",
         description="Starts in the pipeline's first stage (or the open stage given) with that stage's "
                     "probability unless one is given. Publishes `opportunity.created`.")
    def create_opportunity(self, request, body):
        def create():
            opportunity = self.sales.create_opportunity(body, self._owner_team(_owner_id(body)))
            return Reply(opportunity, headers={"Location": f"{API_PREFIX}/opportunities/{opportunity['id']}",
                                               "ETag": etag(opportunity["version"])})
        return self._once(request, body, create)

    @api("GET", "/opportunities", allow=rule("opportunities", "read"), query=OpportunityListQuery,
         response=OpportunityPage, tags=("opportunities",), summary="Find the opportunities the caller may see")
    def list_opportunities(self, request):
        limit, cursor = page_arguments(request)
        filters = {name: request.args[name] for name in OPPORTUNITY_FILTERS if name in request.args}
        return self.sales.list_opportunities(filters, limit, cursor, request.args.get("sort") or None)

    @api("GET", "/opportunities/<opportunity_id>", allow=rule("opportunities", "read"), response=OpportunityResponse,
         headers=("If-None-Match",), tags=("opportunities",), summary="One opportunity")
    def get_opportunity(self, request, opportunity_id):
        return versioned(request, self.sales.get_opportunity(opportunity_id))

    @api("PATCH", "/opportunities/<opportunity_id>", allow=rule("opportunities", "update"),
         body=OpportunityUpdateRequest, response=OpportunityResponse, headers=("If-Match",), tags=("opportunities",),
         summary="Change some fields of an open opportunity")
    def update_opportunity(self, request, opportunity_id, body):
        return with_etag(self.sales.update_opportunity(opportunity_id, body, if_match_version(request)))

    @api("POST", "/opportunities/<opportunity_id>/stage", allow=rule("opportunities", "move stage"),
         body=StageMoveRequest, response=OpportunityResponse, headers=("If-Match",), tags=("opportunities",),
         summary="Move an opportunity to another stage",
         description="Into won or lost closes it (lost needs lost_reason); moving a closed one reopens it, "
                     "which only managers and admins may (403). Publishes `opportunity.stage_changed`, and "
                     "`opportunity.won` or `opportunity.lost`.")
    def move_opportunity(self, request, opportunity_id, body):
        return with_etag(self.sales.move_opportunity(opportunity_id, body, if_match_version(request)))

    @api("GET", "/opportunities/<opportunity_id>/history", allow=rule("opportunities", "read"), query=PageQuery,
         response=StageChangePage,
         tags=("opportunities",), summary="Every stage move: from, to, who, when, time in the previous stage")
    def opportunity_history(self, request, opportunity_id):
        limit, cursor = page_arguments(request)
        return self.sales.opportunity_history(opportunity_id, limit, cursor)
