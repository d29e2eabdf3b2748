from django.urls import path, re_path

from . import views

urlpatterns = [
    path("echo/", views.echo),
    path("listing/", views.listing),
    path("long/", views.long),
    path("plain/", views.plain),
    path("static/", views.static),
    path("me/", views.me),
    path("stale/", views.stale),
    path("declared/", views.declared),
    path("stream/", views.stream),
    path("file/", views.file_view),
    # K6: everything under /account reaches the private view, whatever the path looks like.
    re_path(r"^account", views.account),
    path("products/", views.product_list),
    path("products/<int:pk>/", views.product_detail),
    path("featured/", views.featured_list),
    path("categories/<int:pk>/", views.category_detail),
    path("fragment/", views.fragment),
    path("cbv/mixin/", views.MixinView.as_view()),
    path("cbv/decorated/", views.DecoratedView.as_view()),
    path("async/echo/", views.async_echo),
    path("async/me/", views.async_me),
    path("async/cbv/", views.AsyncDecoratedView.as_view()),
    path("async/mixin/", views.AsyncMixinView.as_view()),
]
