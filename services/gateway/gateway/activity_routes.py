"""The gateway's routes for contacts, follow-ups and saved customer views.

A mixin of GatewayService: the routes here use its dependencies
(``self.customers``, ``self.context``, ``self._users()``, ``self._once``).
"""


class ActivityRoutes:
    pass
