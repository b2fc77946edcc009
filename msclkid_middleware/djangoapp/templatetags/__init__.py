"""``{% load msclkid %}``: the snippet and page tags for Django templates."""
