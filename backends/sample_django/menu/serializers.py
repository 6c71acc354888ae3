"""JSON shapes of the menu API.

A menu item names its category by slug, both ways: the slug is what clients
filter by (``?category=mains``) and what they send when creating an item.
"""
from __future__ import annotations

from rest_framework import serializers

from menu.models import Category, MenuItem

__all__ = ["CategorySerializer", "MenuItemSerializer"]


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "slug", "title"]


class MenuItemSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="slug", queryset=Category.objects.all())

    class Meta:
        model = MenuItem
        fields = ["id", "title", "price", "featured", "category"]
