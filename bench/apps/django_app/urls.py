from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [path("p/<int:pid>", views.product), path("calls", views.view_calls)]
