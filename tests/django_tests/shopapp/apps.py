from django.apps import AppConfig


class ShopappConfig(AppConfig):
    name = "tests.django_tests.shopapp"
    label = "shopapp"
    default_auto_field = "django.db.models.AutoField"
