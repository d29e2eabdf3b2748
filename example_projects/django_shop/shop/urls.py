from django.urls import path

from . import views

app_name = "shop"
urlpatterns = [
    path("", views.product_list, name="list"),
    path("products/<int:pk>/", views.product_detail, name="detail"),
    path("products/<int:pk>/edit/", views.product_edit, name="edit"),
    path("cart/", views.cart, name="cart"),
    path("cart/add/<int:pk>/", views.cart_add, name="cart_add"),
    path("cachekit/", views.dashboard, name="dashboard"),
    path("cachekit/stats.json", views.dashboard_json, name="dashboard_json"),
]
