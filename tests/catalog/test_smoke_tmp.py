from atelier.catalog.v1 import catalog_pb2 as pb
from tests.catalog.conftest import CatalogStack


async def test_smoke(catalog: CatalogStack) -> None:
    reply = await catalog.stub.GetCatalog(pb.GetCatalogRequest())
    assert reply.catalog.version == 1
    print(reply.catalog.models[0])
    r = await catalog.stub.GetPricing(pb.GetPricingRequest())
    print([ (g.kind, len(g.models)) for g in r.groups])
