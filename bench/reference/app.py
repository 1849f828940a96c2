"""The FastAPI + Strawberry reference of `make bench`: the stack this project replaces, answering
`{ products(limit: 20) { id name price } }` from memory.

The products are loaded once per worker at start from the Products service
(`GET $PRODUCTS_URL/products?limit=100`), so both sides serve the very same data; the bench
script compares the two answers' `data` before measuring. Parsing and validation of a query
seen before are cached (Strawberry's `ParserCache` and `ValidationCache`).

Run (as scripts/bench.sh does): `uvicorn app:app --workers $(nproc) --loop uvloop
--http httptools --no-access-log`.
"""

import json
import os
import urllib.request
from contextlib import asynccontextmanager
from decimal import Decimal

import strawberry
from fastapi import FastAPI
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.fastapi import GraphQLRouter


@strawberry.type
class Product:
    id: strawberry.ID
    name: str
    description: str
    price: Decimal
    currency: str
    stock: int
    category: str | None


CATALOGUE: list[Product] = []


def load(products_url: str) -> list[Product]:
    with urllib.request.urlopen(f"{products_url}/products?limit=100", timeout=10) as r:
        items = json.load(r)["items"]
    return [
        Product(
            id=strawberry.ID(str(p["id"])),
            name=p["name"],
            description=p["description"],
            price=Decimal(p["price"]),
            currency=p["currency"],
            stock=p["stock"],
            category=p.get("category"),
        )
        for p in items
    ]


@strawberry.type
class Query:
    @strawberry.field
    def products(self, limit: int = 20, offset: int = 0) -> list[Product]:
        return CATALOGUE[offset : offset + limit]


schema = strawberry.Schema(
    query=Query,
    extensions=[ParserCache(maxsize=128), ValidationCache(maxsize=128)],
)


@asynccontextmanager
async def lifespan(_app: FastAPI):
    CATALOGUE[:] = load(os.environ.get("PRODUCTS_URL", "http://127.0.0.1:8002"))
    yield


app = FastAPI(lifespan=lifespan)
app.include_router(GraphQLRouter(schema, graphql_ide=None), prefix="/graphql")
