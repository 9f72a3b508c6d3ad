import urllib3

def test_live_gateway_serves_healthz(live_gateway):
    r = urllib3.request("GET", live_gateway.url + "/healthz")
    assert r.status == 200
