"""The small corpus shared by the tokenlean-compress pipeline tests (a module, not conftest,
so that test files can import it by a unique name)."""

QUESTION = "When was the Eiffel Tower built?"
CORPUS = [
    "The Eiffel Tower in Paris was built from 1887 to 1889 by Gustave Eiffel's company.",
    "Bananas are yellow tropical fruits that are rich in potassium and easy to peel.",
    "Berlin is the capital of Germany; its famous gate was finished in 1791.",
    "The Louvre museum in Paris holds the Mona Lisa, see https://www.louvre.fr for hours.",
]
