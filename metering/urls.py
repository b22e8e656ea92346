from django.urls import path

from metering import api

app_name = "api"

urlpatterns = [
    path("ingest/frames", api.ingest, name="ingest-frames"),
    path("ingest/acks", api.acknowledge, name="ingest-acks"),
    path("locations/<int:location_id>/live", api.live_values, name="live"),
]
