"""The gateway's routes for products, price lists, quotes, orders and payments (the sales service).

A mixin of GatewayService: the routes here use its dependencies
(``self.sales``, ``self.context``, ``self._users()``, ``self._once``).
"""


class ProductRoutes:
    pass
