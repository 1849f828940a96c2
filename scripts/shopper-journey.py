#!/usr/bin/env python3
"""The shopper journey through the gateway, as a client makes it: register, log in, search the
catalogue, order, pay with a test card, see the order paid; over GraphQL, then the same order read
over the REST facade. Standard library only. Exit 0 when every step answers as the contract says.

    scripts/shopper-journey.py [http://127.0.0.1:8080]
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid

BASE = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080").rstrip("/")


def call(method, path, body=None, token=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def graphql(query, variables=None, token=None):
    status, body = call("POST", "/graphql", {"query": query, "variables": variables or {}}, token)
    if status != 200 or body.get("errors"):
        fail(f"GraphQL answered {status}: {json.dumps(body)[:500]}")
    return body["data"]


def fail(why):
    print(f"journey: FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def step(what):
    print(f"journey: {what}", flush=True)


email = f"shopper-{uuid.uuid4().hex[:12]}@example.com"
password = "correct horse battery"

step(f"register {email}")
user = graphql(
    "mutation($e: String!, $p: String!) { register(email: $e, password: $p, fullName: \"Compose Shopper\") { id role } }",
    {"e": email, "p": password},
)["register"]
if user["role"] != "USER":
    fail(f"registered with role {user['role']}")

step("log in")
token = graphql(
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken tokenType } }",
    {"e": email, "p": password},
)["login"]["accessToken"]
if graphql("{ me { email } }", token=token)["me"]["email"] != email:
    fail("me is not the registered user")

step("search the catalogue")
found = graphql('{ products(search: "lamp", limit: 5) { id name price stock } }')["products"]
listing = graphql("{ products(limit: 20) { id name price stock } }")["products"]
in_stock = [p for p in found + listing if p["stock"] >= 2]
if not in_stock:
    fail("no product in stock in the demo catalogue")
product = in_stock[0]

step(f"order 2 x {product['name']} ({product['price']})")
order = graphql(
    "mutation($items: [OrderItemInput!]!, $key: String) { createOrder(items: $items, idempotencyKey: $key) { id status total } }",
    {"items": [{"productId": product["id"], "quantity": 2}], "key": str(uuid.uuid4())},
    token,
)["createOrder"]
if order["status"] != "PENDING_PAYMENT":
    fail(f"new order is {order['status']}")

step(f"pay order {order['id']} ({order['total']}) with 4242 4242 4242 4242")
payment = graphql(
    "mutation($id: ID!, $key: String) { payOrder(orderId: $id, idempotencyKey: $key, card: {number: \"4242424242424242\", expMonth: 12, expYear: 2035, cvc: \"123\"}) { status amount cardLast4 } }",
    {"id": order["id"], "key": str(uuid.uuid4())},
    token,
)["payOrder"]
if payment["status"] != "SUCCEEDED" or payment["amount"] != order["total"]:
    fail(f"payment {payment}")

step("the order is paid (GraphQL and REST)")
deadline = time.monotonic() + 30
while True:
    status = graphql("query($id: ID!) { order(id: $id) { status } }", {"id": order["id"]}, token)["order"]["status"]
    if status == "PAID":
        break
    if time.monotonic() > deadline:
        fail(f"order still {status} after 30 s")
    time.sleep(0.5)
code, rest = call("GET", f"/api/orders/{order['id']}", token=token)
if code != 200 or rest.get("status") != "paid":
    fail(f"GET /api/orders/{order['id']} answered {code}: {rest}")

step("declined card is a FAILED payment, not an error")
order2 = graphql(
    "mutation($items: [OrderItemInput!]!) { createOrder(items: $items) { id } }",
    {"items": [{"productId": product["id"], "quantity": 1}]},
    token,
)["createOrder"]
declined = graphql(
    "mutation($id: ID!) { payOrder(orderId: $id, card: {number: \"4000000000000002\", expMonth: 12, expYear: 2035, cvc: \"123\"}) { status failureCode } }",
    {"id": order2["id"]},
    token,
)["payOrder"]
if declined["status"] != "FAILED" or declined["failureCode"] != "card_declined":
    fail(f"declined payment {declined}")

print("journey: ok")
