"""The prompts of benchmarks/speculate.py, written for it: (set, name, user message).

"grounded": an instruction over a passage of about 300 tokens (summarise, rewrite, extract facts, answer from
the passage), the case where an answer copies spans of its prompt; "chat": short open questions, where it
does not. The passages are invented (places, people and figures are fictional).
"""
from __future__ import annotations

HARBOUR = (
    "The town of Wrenmouth sits at the mouth of the river Alde, and for most of its history it lived from "
    "fishing. In 1962 the old stone harbour wall was damaged by a winter storm, and the fishing fleet, which "
    "had counted more than forty boats, shrank to eleven within a decade. The town council spent the next "
    "twenty years arguing about whether to repair the wall or to let the harbour silt up. In 1984 a local "
    "schoolteacher, Margaret Hollis, organised a petition that collected 2,300 signatures and persuaded the "
    "regional government to pay for a new concrete breakwater. Work began in the spring of 1986 and took three "
    "years, partly because the builders found the wreck of a nineteenth-century cargo ship under the old "
    "wall and had to wait while archaeologists recorded it. The new breakwater was opened in May 1989. It is "
    "410 metres long, twice the length of the old wall, and it created a sheltered basin large enough for "
    "sailing boats as well as fishing vessels. Today only six fishing boats work from Wrenmouth, but the "
    "harbour holds about 180 moorings for leisure craft, and the sailing club founded in 1991 runs courses "
    "for around 400 children every summer. The cargo ship's bell, recovered during the works, hangs in the "
    "harbour office, and a small museum next to it tells the story of the storm, the petition and the "
    "building of the breakwater. Some older residents still say that the town lost its character when the "
    "fishing declined, while younger ones point out that the harbour now employs more people than it did "
    "in the 1950s, although most of the jobs are seasonal."
)

BATTERY = (
    "Our company tested three battery packs for the new field sensor over a period of eight weeks. Each pack "
    "was placed in a sensor that recorded the temperature, humidity and soil moisture every five minutes and "
    "sent the readings over a low-power radio link once an hour. Pack A is a lithium iron phosphate pack with "
    "a capacity of 3,000 milliamp hours; it costs 14 euros and weighs 95 grams. Pack B is a lithium-ion pack "
    "with 3,400 milliamp hours, costs 11 euros and weighs 70 grams. Pack C is a set of four alkaline cells "
    "with a combined 2,800 milliamp hours, costs 4 euros and weighs 110 grams. At room temperature all three "
    "packs kept the sensor running for the whole test. In the cold chamber, at minus ten degrees, Pack C lost "
    "almost half of its usable capacity and the sensor stopped after 19 days, while Pack A lost about ten "
    "percent and Pack B about twenty percent. In the hot chamber, at forty-five degrees, Pack B swelled "
    "slightly after five weeks, and the safety team flagged this as a risk for sensors mounted in direct "
    "sunlight. Pack A showed no change in either chamber. Based on our estimates, Pack A would power a sensor "
    "for about 26 months in a mild climate, Pack B for about 29 months and Pack C for about 14 months. The "
    "engineering team recommends Pack A for all outdoor installations, despite its higher price and weight, "
    "and suggests Pack B only for indoor sensors, where heat is not a concern. Pack C is not recommended "
    "except for short trials, because replacing batteries in the field costs far more than the cells."
)

GARDEN = (
    "The community garden on Larch Street opened in 2015 on a plot that had been an empty car park for more "
    "than ten years. Volunteers removed the asphalt by hand over four weekends, and a local builder donated "
    "soil and timber for thirty raised beds. Each bed is rented to a household for 25 a year, and the money "
    "pays for water, tools and seeds. There is a waiting list of about sixty households, so beds are given "
    "out by lottery every February. Members must work in the shared areas for at least two hours a month: "
    "the herb spiral, the fruit trees along the fence and the compost bays at the back. The garden keeps "
    "two beehives, looked after by a retired nurse called Tomas Reyes, who also runs a beekeeping class on "
    "the first Saturday of each month. In 2021 the garden added a rainwater system that collects water from "
    "the roof of the neighbouring library into four tanks holding 8,000 litres in total; in a normal summer "
    "this covers about two thirds of the water the garden uses. The garden's biggest problem is slugs, "
    "followed by the pigeons that eat young cabbage plants, and members have voted twice against using "
    "slug pellets because of the risk to hedgehogs. Instead they use beer traps, copper tape and evening "
    "slug hunts. Every September the garden holds a harvest fair where members sell surplus vegetables, "
    "jam and honey, and the profits are given to the food bank that operates from the library next door."
)


def _ground(passage: str, instruction: str) -> str:
    return f"{instruction}\n\n{passage}"


PROMPTS: list[tuple[str, str, str]] = [
    ("grounded", "harbour-summary", _ground(HARBOUR, "Summarise the following text in three sentences.")),
    ("grounded", "harbour-dates", _ground(HARBOUR, "List every year mentioned in the text below and say what "
                                          "happened in that year, one line per year.")),
    ("grounded", "harbour-question", _ground(HARBOUR, "Read the text below, then answer: why did the "
                                             "building of the breakwater take three years?")),
    ("grounded", "battery-table", _ground(BATTERY, "Extract the capacity, price and weight of each battery "
                                          "pack from this report as a list.")),
    ("grounded", "battery-rewrite", _ground(BATTERY, "Rewrite the following report in simpler English for a "
                                            "customer who is not an engineer.")),
    ("grounded", "battery-question", _ground(BATTERY, "Using only the report below, which pack should be used "
                                             "for an outdoor sensor in a cold place, and why?")),
    ("grounded", "garden-summary", _ground(GARDEN, "Write a short summary of this text for a newsletter.")),
    ("grounded", "garden-facts", _ground(GARDEN, "Extract the key facts from this text as bullet points: "
                                         "dates, numbers, names and rules.")),
    ("chat", "sleep", "Why do people need to sleep?"),
    ("chat", "bread", "How do I bake a simple loaf of bread at home?"),
    ("chat", "rain", "What makes it rain?"),
    ("chat", "language", "What is a good way to start learning a new language?"),
    ("chat", "email", "Write a short, polite email asking my manager for a day off next Friday."),
    ("chat", "python", "Explain what a Python list comprehension is, with an example."),
    ("chat", "planets", "Why are the planets round?"),
    ("chat", "habit", "Give me three tips for building a daily exercise habit."),
]
