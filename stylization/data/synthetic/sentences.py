"""The synthetic corpus's sentence bank: short everyday English sentences, MEAD-like in length.

Built from our own word lists by fixed templates, so the bank is deterministic (no random
state) and large. :func:`sentence_bank` returns it in a fixed shuffled order; the corpus
reserves the tail of that order for the test split, so train and test share no sentence.
"""

from __future__ import annotations

import itertools

import numpy as np

_SUBJECTS = ("The old farmer", "My younger sister", "A tired student", "The quiet neighbour", "Our new teacher",
             "The tall waiter", "His best friend", "The careful driver", "A young painter", "The busy doctor",
             "Her little brother", "The local baker")
_ACTIONS = ("carried the heavy box", "found a silver key", "painted the garden fence", "opened the back window",
            "lost the train ticket", "baked fresh bread", "fixed the broken chair", "read the evening paper",
            "watered the tomato plants", "locked the front door", "missed the last bus", "cleaned the dusty shelves")
_PLACES = ("across the yard", "before the storm", "after lunch", "near the river", "in the morning",
           "under the bridge", "at the market", "during the holiday", "by the station", "on a windy day")
_QUESTIONS = ("Did you remember to bring the {obj}?", "Where did you put the {obj} yesterday?",
              "Why is the {obj} still on the table?", "Could you pass me the {obj}, please?")
_OBJECTS = ("blue umbrella", "coffee cup", "kitchen knife", "map of the city", "wooden spoon", "orange basket",
            "music box", "spare battery")
_STATEMENTS = ("We should leave before the {obj} gets cold.", "Nobody expected the {obj} to be so small.",
               "I never thought the {obj} would break so easily.", "She kept the {obj} in a drawer for years.")


def sentence_bank() -> list[str]:
    """At least 200 distinct sentences in a fixed order (the same on every machine)."""
    sentences = [f"{s} {a} {p}." for s, a, p in itertools.product(_SUBJECTS, _ACTIONS, _PLACES)
                 if (_SUBJECTS.index(s) * 7 + _ACTIONS.index(a) * 3 + _PLACES.index(p)) % 6 == 0]
    sentences += [t.format(obj=o) for t, o in itertools.product(_QUESTIONS + _STATEMENTS, _OBJECTS)]
    order = np.random.default_rng(20240101).permutation(len(sentences))
    return [sentences[i] for i in order]


def split_bank(test_fraction: float = 0.2) -> tuple[list[str], list[str]]:
    """(train sentences, test sentences), disjoint; the test part is the bank's tail."""
    bank = sentence_bank()
    n_test = max(1, int(round(len(bank) * test_fraction)))
    return bank[:-n_test], bank[-n_test:]
