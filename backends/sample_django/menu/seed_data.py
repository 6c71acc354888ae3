"""The demo menu that ``manage.py seed`` loads: realistic, small, and fixed.

Kept apart from the command so the data reads like a menu, not like code.
Prices are strings so they reach the DecimalField exactly.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["CATEGORIES", "MENU_ITEMS", "SeedItem"]


class SeedItem(NamedTuple):
    title: str
    price: str
    category: str  # a slug from CATEGORIES
    featured: bool = False


# slug -> title
CATEGORIES: dict[str, str] = {
    "appetizers": "Appetizers",
    "mains": "Mains",
    "desserts": "Desserts",
    "drinks": "Drinks",
    "specials": "Specials",
}

MENU_ITEMS: tuple[SeedItem, ...] = (
    SeedItem("Greek Salad", "12.99", "appetizers", featured=True),
    SeedItem("Bruschetta", "7.99", "appetizers", featured=True),
    SeedItem("Hummus and Warm Pita", "6.50", "appetizers"),
    SeedItem("Spanakopita", "8.25", "appetizers"),
    SeedItem("Grilled Halloumi", "9.00", "appetizers"),
    SeedItem("Marinated Olives", "4.50", "appetizers"),
    SeedItem("Stuffed Grape Leaves", "7.25", "appetizers"),
    SeedItem("Fried Calamari", "10.50", "appetizers"),
    SeedItem("Lamb Souvlaki", "18.50", "mains", featured=True),
    SeedItem("Moussaka", "17.00", "mains"),
    SeedItem("Grilled Sea Bass", "24.00", "mains"),
    SeedItem("Chicken Gyro Plate", "15.75", "mains"),
    SeedItem("Shrimp Saganaki", "19.50", "mains"),
    SeedItem("Mushroom Risotto", "16.00", "mains"),
    SeedItem("Pastitsio", "16.50", "mains"),
    SeedItem("Falafel Bowl", "13.25", "mains"),
    SeedItem("Lemon Dessert", "6.99", "desserts", featured=True),
    SeedItem("Baklava", "5.50", "desserts"),
    SeedItem("Galaktoboureko", "6.25", "desserts"),
    SeedItem("Greek Yogurt with Honey", "5.00", "desserts"),
    SeedItem("Loukoumades", "5.75", "desserts"),
    SeedItem("Orange Olive Oil Cake", "6.50", "desserts"),
    SeedItem("Fresh Lemonade", "3.50", "drinks", featured=True),
    SeedItem("Greek Frappe", "4.25", "drinks"),
    SeedItem("Mint Iced Tea", "3.25", "drinks"),
    SeedItem("Sparkling Water", "2.50", "drinks"),
    SeedItem("House Red Wine", "8.00", "drinks"),
    SeedItem("House White Wine", "8.00", "drinks"),
    SeedItem("Espresso", "2.75", "drinks"),
    SeedItem("Chef's Catch of the Day", "26.00", "specials", featured=True),
    SeedItem("Slow-Roasted Lamb Shoulder", "28.50", "specials"),
    SeedItem("Seafood Orzo", "22.00", "specials"),
    SeedItem("Lemon Chicken Soup", "8.50", "specials"),
    SeedItem("Grilled Octopus", "21.00", "specials"),
)
