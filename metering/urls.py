from django.urls import path

from metering.ingest import http

app_name = "api"

urlpatterns = [
    path("ingest/frames", http.frames, name="ingest-frames"),
    path("ingest/acks", http.acknowledgement, name="ingest-acks"),
]
