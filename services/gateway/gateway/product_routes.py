"""The gateway's routes for products, price lists, quotes, orders and payments (the sales service).

A mixin of GatewayService: the routes here use its dependencies
(``self.sales``, ``self.context``, ``self._users()``, ``self._once``).
The sales service validates input, prices lines and applies record-level
rules; the gateway adds what only it knows: the owner's team (it owns the
users) and, for a customer's orders, whether the caller may see the customer.
"""
from gateway import idempotency
from gateway.permissions import rule
from gateway.http import API_PREFIX, Reply, api, etag, if_match_version, if_none_match_version, page_arguments
from gateway.product_schemas import (
    ORDER_FILTERS, PRODUCT_FILTERS, QUOTE_FILTERS, CustomerOrdersQuery, OrderCreateRequest, OrderListQuery,
    OrderPage, OrderResponse,
    PaymentList, PaymentRecordedResponse, PaymentRequest, PriceListCreateRequest, PriceListPage,
    PriceListResponse, PriceListUpdateRequest, ProductCreateRequest, ProductListQuery, ProductPage,
    ProductResponse, ProductUpdateRequest, QuoteCreateRequest, QuoteListQuery, QuotePage, QuoteResponse,
    QuoteUpdateRequest, ReasonRequest,
)
from gateway.schemas import PageQuery

STATES = "Answers 409 naming the current status when the record is not in a state that allows this."


def query_filters(request, names):
    """The list filters present in the query string, as the sales service takes them."""
    return {name: request.args[name] for name in names if request.args.get(name)}


def with_etag(request, record, status=None, location=None):
    """``record`` with its ETag (and Location); 304 without a body when the client holds this version."""
    headers = {"ETag": etag(record["version"])}
    if location:
        headers["Location"] = f"{API_PREFIX}{location}"
    if status is None and if_none_match_version(request) == record["version"]:
        return Reply(status=304, headers=headers)
    return Reply(record, status=status, headers=headers)


def _owner_id(body):
    return body.get("owner_id") if isinstance(body, dict) else None


class ProductRoutes:
    # --- products --------------------------------------------------------------

    @api("POST", "/products", allow=rule("products", "create"), body=ProductCreateRequest, response=ProductResponse,
         status=201, headers=(idempotency.HEADER,), tags=("products",), summary="Add a product to the catalogue",
         description="The SKU is unique: 409 naming sku when it is taken.")
    def create_product(self, request, body):
        def create():
            product = self.sales.create_product(body)
            return with_etag(request, product, 201, f"/products/{product['id']}")
        return self._once(request, body, create)

    @api("GET", "/products", allow=rule("products", "read"), query=ProductListQuery, response=ProductPage,
         tags=("products",), summary="Find products")
    def list_products(self, request):
        limit, cursor = page_arguments(request)
        return self.sales.list_products(query_filters(request, PRODUCT_FILTERS), limit, cursor)

    @api("GET", "/products/<product_id>", allow=rule("products", "read"), response=ProductResponse,
         headers=("If-None-Match",), tags=("products",), summary="One product")
    def get_product(self, request, product_id):
        return with_etag(request, self.sales.get_product(product_id))

    @api("PATCH", "/products/<product_id>", allow=rule("products", "update"), body=ProductUpdateRequest,
         response=ProductResponse, headers=("If-Match",), tags=("products",),
         summary="Change a product (send active=false to deactivate it)",
         description="Quotes and orders keep their prices: a change applies to lines priced afterwards.")
    def update_product(self, request, product_id, body):
        product = self.sales.update_product(product_id, body, if_match_version(request))
        return Reply(product, headers={"ETag": etag(product["version"])})

    # --- price lists -----------------------------------------------------------

    @api("POST", "/price-lists", allow=rule("price lists", "create"), body=PriceListCreateRequest,
         response=PriceListResponse, status=201, headers=(idempotency.HEADER,), tags=("price lists",),
         summary="Create a price list for some customers",
         description="A quote line of one of its customers, in the list's currency, takes the item's price "
                     "valid on the quote's date. A customer is in at most one list (409).")
    def create_price_list(self, request, body):
        def create():
            price_list = self.sales.create_price_list(body)
            return with_etag(request, price_list, 201, f"/price-lists/{price_list['id']}")
        return self._once(request, body, create)

    @api("GET", "/price-lists", allow=rule("price lists", "read"), query=PageQuery, response=PriceListPage,
         tags=("price lists",), summary="The price lists")
    def list_price_lists(self, request):
        limit, cursor = page_arguments(request)
        return self.sales.list_price_lists(limit, cursor)

    @api("GET", "/price-lists/<price_list_id>", allow=rule("price lists", "read"), response=PriceListResponse,
         headers=("If-None-Match",), tags=("price lists",), summary="One price list with its items and customers")
    def get_price_list(self, request, price_list_id):
        return with_etag(request, self.sales.get_price_list(price_list_id))

    @api("PATCH", "/price-lists/<price_list_id>", allow=rule("price lists", "update"), body=PriceListUpdateRequest,
         response=PriceListResponse, headers=("If-Match",), tags=("price lists",),
         summary="Change a price list (items and customer_ids replace what it had)")
    def update_price_list(self, request, price_list_id, body):
        price_list = self.sales.update_price_list(price_list_id, body, if_match_version(request))
        return Reply(price_list, headers={"ETag": etag(price_list["version"])})

    # --- quotes ----------------------------------------------------------------

    @api("POST", "/quotes", allow=rule("quotes", "create"), body=QuoteCreateRequest, response=QuoteResponse, status=201,
         headers=(idempotency.HEADER,), tags=("quotes",), summary="Draft a quote",
         description="Errors name the field, e.g. lines.2.product_id for a product with no price in the "
                     "quote's currency.")
    def create_quote(self, request, body):
        def create():
            quote = self.sales.create_quote(body, self._owner_team(_owner_id(body)))
            return with_etag(request, quote, 201, f"/quotes/{quote['id']}")
        return self._once(request, body, create)

    @api("GET", "/quotes", allow=rule("quotes", "read"), query=QuoteListQuery, response=QuotePage, tags=("quotes",),
         summary="The quotes the caller may see, newest first")
    def list_quotes(self, request):
        limit, cursor = page_arguments(request)
        return self.sales.list_quotes(query_filters(request, QUOTE_FILTERS), limit, cursor)

    @api("GET", "/quotes/<quote_id>", allow=rule("quotes", "read"), response=QuoteResponse,
         headers=("If-None-Match",), tags=("quotes",), summary="One quote")
    def get_quote(self, request, quote_id):
        return with_etag(request, self.sales.get_quote(quote_id))

    @api("PATCH", "/quotes/<quote_id>", allow=rule("quotes", "update"), body=QuoteUpdateRequest, response=QuoteResponse,
         headers=("If-Match",), tags=("quotes",), summary="Change a draft quote", description=STATES)
    def update_quote(self, request, quote_id, body):
        quote = self.sales.update_quote(quote_id, body, if_match_version(request))
        return Reply(quote, headers={"ETag": etag(quote["version"])})

    @api("POST", "/quotes/<quote_id>/send", allow=rule("quotes", "send"), response=QuoteResponse, tags=("quotes",),
         summary="Send a draft quote to the customer", description=STATES)
    def send_quote(self, request, quote_id):
        return with_etag(request, self.sales.send_quote(quote_id), 200)

    @api("POST", "/quotes/<quote_id>/accept", allow=rule("quotes", "accept"), response=OrderResponse, status=201,
         tags=("quotes",), summary="Record the customer's acceptance: the quote becomes a confirmed order",
         description="Answers the order. Exactly one order per quote: accepting again answers 409 naming the "
                     "status; a sent quote past valid_until answers 409 (expired).")
    def accept_quote(self, request, quote_id):
        order = self.sales.accept_quote(quote_id)
        return with_etag(request, order, 201, f"/orders/{order['id']}")

    @api("POST", "/quotes/<quote_id>/reject", allow=rule("quotes", "reject"), body=ReasonRequest,
         response=QuoteResponse,
         tags=("quotes",), summary="Record that the customer turned a sent quote down", description=STATES)
    def reject_quote(self, request, quote_id, body):
        return with_etag(request, self.sales.reject_quote(quote_id, body), 200)

    # --- orders and payments ---------------------------------------------------

    @api("POST", "/orders", allow=rule("orders", "create"), body=OrderCreateRequest, response=OrderResponse, status=201,
         headers=(idempotency.HEADER,), tags=("orders",), summary="Enter a draft order directly (not from a quote)")
    def create_order(self, request, body):
        def create():
            order = self.sales.create_order(body, self._owner_team(_owner_id(body)))
            return with_etag(request, order, 201, f"/orders/{order['id']}")
        return self._once(request, body, create)

    @api("GET", "/orders", allow=rule("orders", "read"), query=OrderListQuery, response=OrderPage, tags=("orders",),
         summary="The orders the caller may see, newest first")
    def list_orders(self, request):
        limit, cursor = page_arguments(request)
        return self.sales.list_orders(query_filters(request, ORDER_FILTERS), limit, cursor)

    @api("GET", "/orders/<order_id>", allow=rule("orders", "read"), response=OrderResponse,
         headers=("If-None-Match",), tags=("orders",), summary="One order with its lines and what is paid")
    def get_order(self, request, order_id):
        return with_etag(request, self.sales.get_order(order_id))

    @api("POST", "/orders/<order_id>/confirm", allow=rule("orders", "confirm"), response=OrderResponse,
         tags=("orders",), summary="Confirm a draft order (publishes order.placed)", description=STATES)
    def confirm_order(self, request, order_id):
        return with_etag(request, self.sales.confirm_order(order_id), 200)

    @api("POST", "/orders/<order_id>/payments", allow=rule("payments", "create"), body=PaymentRequest,
         response=PaymentRecordedResponse, status=201, headers=(idempotency.HEADER,), tags=("orders",),
         summary="Record a payment of a confirmed order",
         description="The order becomes paid when payments reach its total. More than what is outstanding "
                     "answers 422 naming amount; a cancelled, draft or already paid order answers 409. Payments "
                     "of one order are applied one at a time, so concurrent ones never overpay it. Send an "
                     "Idempotency-Key so that a retried request records the payment once.")
    def pay_order(self, request, order_id, body):
        def create():
            payment = self.sales.pay_order(order_id, body)
            return Reply(payment, status=201,
                         headers={"Location": f"{API_PREFIX}/orders/{order_id}/payments",
                                  "ETag": etag(payment["order"]["version"])})
        return self._once(request, body, create)

    @api("GET", "/orders/<order_id>/payments", allow=rule("payments", "read"), response=PaymentList, tags=("orders",),
         summary="The payments of an order, oldest first")
    def list_payments(self, request, order_id):
        return self.sales.list_payments(order_id)

    @api("POST", "/orders/<order_id>/fulfil", allow=rule("orders", "fulfil"), response=OrderResponse, tags=("orders",),
         summary="Record that a paid order was delivered", description=STATES)
    def fulfil_order(self, request, order_id):
        return with_etag(request, self.sales.fulfil_order(order_id), 200)

    @api("POST", "/orders/<order_id>/cancel", allow=rule("orders", "cancel"), body=ReasonRequest,
         response=OrderResponse, tags=("orders",), summary="Cancel a draft or confirmed order that has no payments",
         description=STATES + " A fulfilled, paid or partly paid order is not cancelled (409): its money "
                              "would have to be refunded first.")
    def cancel_order(self, request, order_id, body):
        return with_etag(request, self.sales.cancel_order(order_id, body), 200)

    @api("GET", "/customers/<customer_id>/orders", allow=rule("orders", "read"), query=CustomerOrdersQuery,
         response=OrderPage, tags=("orders",), summary="A customer's orders the caller may see, newest first",
         description="404 when the caller may not see the customer.")
    def customer_orders(self, request, customer_id):
        # The customers service decides who sees the customer; sales then decides which orders.
        self.customers.get_customer(customer_id)
        limit, cursor = page_arguments(request)
        filters = {**query_filters(request, ORDER_FILTERS), "customer_id": customer_id}
        return self.sales.list_orders(filters, limit, cursor)
