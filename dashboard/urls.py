from django.urls import path

from dashboard import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("locations/<int:pk>/", views.location_dashboard, name="location"),
    path("locations/<int:pk>/usage.csv", views.usage_csv, name="usage-csv"),
    path("locations/<int:pk>/relays/<int:relay_id>/", views.switch_relay, name="relay"),
]
