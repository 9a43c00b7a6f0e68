"""The gateway's routes for contracts and their attachments (the sales service).

A mixin of GatewayService: the routes here use its dependencies
(``self.sales``, ``self.context``, ``self._users()``, ``self._once``).
"""


class ContractRoutes:
    pass
