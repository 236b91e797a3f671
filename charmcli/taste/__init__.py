"""The photographer's own taste: ratings in, a small linear model on stored features, taste out.

Torch-free (numpy only): learning and predicting work from what ``charm score`` stored, so
``charm learn`` and ``charm top --taste`` never load a network.

* :mod:`charmcli.taste.ratings` — which star ratings are the user's judgement (sidecars and
  review decisions) and which are charm's own guesses;
* :mod:`charmcli.taste.fit` — ridge and pairwise-ranking fits, cross-validated, and the choice;
* :mod:`charmcli.taste.model` — the fitted model: predict, and a few kilobytes of bytes to store.
"""

from charmcli.taste.fit import MIN_RATINGS, NotEnoughRatings, TasteFit, fit_taste
from charmcli.taste.model import TasteModel
from charmcli.taste.ratings import UserRating, user_rating, user_ratings

__all__ = [
    "MIN_RATINGS",
    "NotEnoughRatings",
    "TasteFit",
    "TasteModel",
    "UserRating",
    "fit_taste",
    "user_rating",
    "user_ratings",
]
