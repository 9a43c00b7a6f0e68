"""The gateway's routes for importing and exporting customers.

A mixin of GatewayService: the routes here use its dependencies
(``self.customers``, ``self.context``, ``self._users()``, ``self._once``).
"""


class ImportRoutes:
    pass
