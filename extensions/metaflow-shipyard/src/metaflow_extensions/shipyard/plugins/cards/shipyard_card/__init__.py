"""The ``shipyard`` Metaflow card type: ``@card(type="shipyard")``, which ``@shipyard.track`` attaches by itself.

Metaflow imports this package whenever it is imported (it lists every
extension's ``CARDS``), so it imports nothing but Metaflow's card base class;
the card's work is imported when a card is drawn.
"""

from .card import ShipyardCard

CARDS = [ShipyardCard]
