from django.urls import path

from dashboard import automations, validate, views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("locations/<int:pk>/", views.location_dashboard, name="location"),
    path("locations/<int:pk>/usage.csv", views.usage_csv, name="usage-csv"),
    path("locations/<int:pk>/relays/<int:relay_id>/", views.switch_relay, name="relay"),
    # The installer's pages (dashboard.validate).
    path("locations/<int:pk>/validate/", validate.validate_page, name="validate"),
    path("locations/<int:pk>/validate/fix/", validate.fix, name="validate-fix"),
    path("locations/<int:pk>/validate/sign-off/", validate.sign_off, name="validate-sign-off"),
    path("locations/<int:pk>/reports/", validate.report_list, name="reports"),
    path("locations/<int:pk>/reports/<int:report_pk>/", validate.report, name="report"),
    path("locations/<int:pk>/reports/<int:report_pk>.pdf", validate.report_pdf, name="report-pdf"),
    # Automations (dashboard.automations).
    path("locations/<int:pk>/automations/", automations.automation_list, name="automations"),
    path("locations/<int:pk>/automations/new/", automations.automation_new, name="automation-new"),
    path("locations/<int:pk>/automations/<int:automation_id>/", automations.automation_edit, name="automation-edit"),
    path(
        "locations/<int:pk>/automations/<int:automation_id>/toggle/",
        automations.automation_toggle,
        name="automation-toggle",
    ),
    path(
        "locations/<int:pk>/automations/<int:automation_id>/delete/",
        automations.automation_delete,
        name="automation-delete",
    ),
]
