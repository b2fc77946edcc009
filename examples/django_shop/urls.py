from __future__ import annotations

from django.urls import path

from examples.django_shop import views

urlpatterns = [
    path("", views.index, name="index"),
    path("go", views.ad_landing, name="go"),
    path("product/<slug:slug>", views.product, name="product"),
    path("consent", views.consent, name="consent"),
    path("checkout", views.checkout, name="checkout"),
    path("checkout-async", views.checkout_async, name="checkout-async"),
    path("orders/<str:order_id>", views.order, name="order"),
]
