"""The gateway's routes for pipelines and opportunities (the sales service).

A mixin of GatewayService: the routes here use its dependencies
(``self.sales``, ``self.context``, ``self._users()``, ``self._once``).
"""


class PipelineRoutes:
    pass
