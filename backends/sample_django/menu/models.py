"""Menu data: a handful of categories, each holding priced menu items."""
from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

__all__ = ["Category", "MenuItem"]


class Category(models.Model):
    """A section of the menu; its slug is the public name (``?category=desserts``)."""

    slug = models.SlugField(unique=True)
    title = models.CharField(max_length=255, db_index=True)

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.title


class MenuItem(models.Model):
    """A dish or drink. Titles are unique so a menu never lists one dish twice."""

    title = models.CharField(max_length=255, unique=True)
    price = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        db_index=True,
        validators=[MinValueValidator(Decimal("0.00"))],
    )
    featured = models.BooleanField(default=False, db_index=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="menu_items")

    class Meta:
        # A total order keeps pages stable: every item appears on exactly one page.
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.price})"
