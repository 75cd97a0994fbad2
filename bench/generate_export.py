#!/usr/bin/env python3
"""Deterministic generator of large, realistic chat-history exports.

    python bench/generate_export.py --out /tmp/bench/classic.zip --size-mb 300 \
        --layout classic --seed 1 --zip

Writes a ChatGPT export (``--layout classic``: one ``conversations.json``
array; ``--layout split``: the 2026 layout, ``conversations-000.json`` ... plus
``export_manifest.json``) or, with ``--format claude``, a claude.ai export.

Why it looks the way it does:

* It streams: every conversation is serialised with ``orjson.dumps`` and written
  at once, so memory stays flat whatever ``--size-mb`` is and a 300 MB export
  takes seconds, not minutes.
* It is deterministic: one ``random.Random(seed)`` drives everything (ids,
  times, text, media bytes) and zip entries carry a fixed date, so the same
  arguments give the same bytes.  Tests rely on that.
* It is realistic where a parser can trip: null-message roots, hidden system
  messages, custom instructions (``user_editable_context``), saved memory
  (``model_editable_context``), edited and regenerated branches with
  ``current_node`` on one of them, multimodal parts (images, voice),
  code-interpreter and browsing tool calls, o-series ``thoughts`` and
  ``reasoning_recap`` (which a parser must ignore), timestamps in
  milliseconds, huge pastes, and in the split layout nodes without
  ``children`` and messages missing optional keys.
* The user's side reads like one person (a persona per seed) who mentions
  their job, projects, plans, preferences and decisions over ~2 years, so the
  memory built from it can be checked by eye.

Only the standard library and orjson are needed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import gc
import itertools
import random
import re
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import orjson

# ---------------------------------------------------------------- constants

# Conversations end at a fixed instant so output never depends on "now".
END_DATE = _dt.datetime(2026, 2, 15, 18, 30, tzinfo=_dt.timezone.utc)
END_TIME = END_DATE.timestamp()
SPAN_SECONDS = 730 * 86400  # ~2 years of history
# Zip entries get this timestamp (zip needs a local-time tuple, no tz).
ZIP_DATE = (2026, 2, 15, 18, 30, 0)
# Measured average size of one generated conversation; only used to spread
# conversation start times over the span when the count is not given.
AVG_CONVERSATION_BYTES = 22_000


@functools.lru_cache(maxsize=None)
def _ts(day: str) -> float:
    return _dt.datetime.fromisoformat(day).replace(tzinfo=_dt.timezone.utc).timestamp()


NEVER = float("inf")
ALWAYS = float("-inf")


def W(text: str, after: str | None = None, before: str | None = None):
    """A template valid only inside [after, before): plans come true, events pass."""
    return (text, _ts(after) if after else ALWAYS, _ts(before) if before else NEVER)


def F(tags: str, text: str, mem: str | None = None, after: str | None = None, before: str | None = None):
    """A first-person fact, the topics it fits, and how ChatGPT's memory would phrase it."""
    return (frozenset(tags.split()), text, mem, _ts(after) if after else ALWAYS, _ts(before) if before else NEVER)


# ================================================================ personas
# One person per seed: (seed - 1) % len(PERSONAS).  Facts are first person and
# time-windowed so that e.g. the wedding is planned before its date and
# remembered after it.

MAYA = {
    "name": "Maya Lindqvist",
    "email": "maya.lindqvist@fastmail.com",
    "colo": "LIS",
    "slots": {
        "first": "Maya", "city": "Lisbon", "partner": "Jonas", "pet": "Pixel", "company": "Tidewater",
        "job": "data engineer", "project": "Harbor", "blog": "Crumb & Coast", "hometown": "Uppsala",
        "sibling": "Elin", "editor": "VS Code", "work_topic": "data contracts for shipment tracking events",
    },
    "code_langs": ["python", "python", "python", "python", "sql", "sql", "sql", "shell"],
    "facts": [
        F("work code project career", "I'm a data engineer at Tidewater, a logistics startup in Lisbon with about 40 people.",
          "Works as a data engineer at Tidewater, a logistics startup in Lisbon."),
        F("work code", "I'm the only data engineer on a team of three, so I end up owning the whole warehouse."),
        F("code", "I mostly use Python 3.11 and PostgreSQL, and I write everything in VS Code.",
          "Uses Python 3.11, PostgreSQL and VS Code at work."),
        F("code project", "We're still on Airflow for orchestration, for now.", before="2025-03-10"),
        F("code project career", "I decided to move the pipeline to Dagster in March and I don't regret it.",
          "Decided in March 2025 to move the Harbor pipeline from Airflow to Dagster.", after="2025-03-10"),
        F("project", "Harbor is our migration of the shipment-tracking pipeline off a pile of old cron scripts.",
          "Leads Harbor, the migration of Tidewater's shipment-tracking pipeline."),
        F("project", "Harbor ingests about two million tracking events a day from carrier APIs."),
        F("project code", "I sketch all my pipeline diagrams in Figma because Jonas got me hooked on it."),
        F("code project", "I prefer concise answers with code first.", "Prefers concise answers with code first."),
        F("general writing", "I hate long preambles, please just get to the point.", "Dislikes long preambles."),
        F("cooking travel sport", "Metric units please."),
        F("cooking hobby", "I'm vegetarian.", "Is vegetarian."),
        F("cooking", "I'm lactose intolerant, so go easy on the dairy.", "Is lactose intolerant."),
        F("hobby cooking writing", "I run a little sourdough blog called Crumb & Coast and post every other Sunday.",
          "Runs a sourdough blog called Crumb & Coast."),
        F("hobby", "My starter is called Gunnar, he's about four years old."),
        F("travel family", "I grew up in Uppsala in Sweden and moved to Lisbon in 2021.",
          "Grew up in Uppsala, Sweden, and moved to Lisbon in 2021."),
        F("travel", "I'd rather take the train than fly when the trip is under eight hours.",
          "Prefers trains over flights for trips under eight hours."),
        F("travel", "We're going hiking in the Azores in May.", after="2024-02-01", before="2024-05-18"),
        F("travel", "We spent a week hiking in the Azores in May and loved it.", after="2024-05-26", before="2025-01-01"),
        F("family milestone", "My partner Jonas is a UX designer and basically lives in Figma.",
          "Partner is Jonas, a UX designer.", before="2025-09-14"),
        F("family milestone", "My husband Jonas is a UX designer.", after="2025-09-14"),
        F("milestone", "Jonas proposed in June on a rainy ferry to Cacilhas.", after="2024-06-15", before="2025-09-14"),
        F("milestone", "We're getting married on 14 September 2025 in Sintra.",
          "Is getting married to Jonas on 2025-09-14 in Sintra.", after="2024-06-15", before="2025-09-14"),
        F("milestone family", "Jonas and I got married on 14 September in Sintra.",
          "Married Jonas on 2025-09-14 in Sintra.", after="2025-09-14"),
        F("family", "My sister Elin is a doctor in Stockholm.", "Has a sister, Elin, who is a doctor in Stockholm."),
        F("family", "My parents still live in Uppsala and come down every Easter."),
        F("pets home", "We have a grey rescue cat called Pixel.", "Has a grey rescue cat named Pixel."),
        F("sport health", "I'm training for my first marathon, Porto on 3 November.",
          "Training for the Porto Marathon on 2024-11-03.", after="2024-05-01", before="2024-11-03"),
        F("sport health", "I ran my first marathon in Porto in November, in 4:12.",
          "Ran the 2024 Porto Marathon in 4:12.", after="2024-11-03"),
        F("sport health", "I've had IT band pain in my left knee since August.", after="2024-08-10", before="2025-02-01"),
        F("sport", "I run four times a week, mostly along the river towards Belém."),
        F("language", "I'm learning European Portuguese, I'm somewhere around A2.",
          "Is learning European Portuguese.", before="2025-06-20"),
        F("language", "I passed my B1 Portuguese exam in June!", "Passed the B1 Portuguese exam in June 2025.",
          after="2025-06-20"),
        F("career work", "I believe data contracts matter more than whichever orchestrator you pick."),
        F("career work", "Honestly, I think most dashboards nobody opens should just be deleted."),
        F("career", "I decided to stop taking freelance gigs on weekends.",
          "Stopped doing weekend freelance work in September 2024.", after="2024-09-01"),
        F("home finance", "We decided to keep renting instead of buying in Lisbon, prices are insane.",
          "Decided to keep renting in Lisbon rather than buy.", after="2025-01-15"),
        F("home", "We live in a small flat in Arroios with a balcony full of herbs."),
        F("writing", "I write in English, but most of my readers are in Portugal and Scandinavia."),
    ],
    "custom_instructions": [
        ("2024-03-01", "2025-03-15",
         "I'm Maya, a data engineer at a small logistics startup in Lisbon. I work with Python, PostgreSQL and Airflow "
         "in VS Code. I'm vegetarian, I bake sourdough and I'm learning Portuguese.",
         "Be concise. Code first, explanation after. No long preambles. Metric units, British spelling."),
        ("2025-03-15", None,
         "I'm Maya, a data engineer at Tidewater (logistics startup, Lisbon). Stack: Python 3.11, PostgreSQL 16, "
         "Dagster, VS Code. Vegetarian and lactose intolerant. Getting married in September 2025. I run a sourdough "
         "blog called Crumb & Coast.",
         "Answer with code first when there is code. Keep it short; I'll ask for more. No preambles, no 'great "
         "question'. Metric units."),
    ],
}

DANIEL = {
    "name": "Daniel Okafor",
    "email": "dan.okafor@proton.me",
    "colo": "MAN",
    "slots": {
        "first": "Daniel", "city": "Manchester", "partner": "Grace", "pet": "Miso", "company": "Ledgerly",
        "job": "product designer", "project": "Atlas", "blog": "the Atlas docs", "hometown": "Leeds",
        "sibling": "Tobi", "editor": "Figma", "work_topic": "accessibility in our design system",
    },
    "code_langs": ["typescript", "typescript", "typescript", "css", "shell"],
    "facts": [
        F("work code project career", "I'm a product designer at Ledgerly, a fintech in Manchester.",
          "Works as a product designer at Ledgerly, a fintech in Manchester."),
        F("work code", "I design in Figma but I prototype in React and TypeScript myself.",
          "Designs in Figma and prototypes in React/TypeScript."),
        F("project", "Atlas is the design system I look after, about 60 components.",
          "Maintains Atlas, Ledgerly's design system."),
        F("project code career", "I decided to move our design tokens to Style Dictionary.",
          "Decided to move Atlas design tokens to Style Dictionary in February 2025.", after="2025-02-03"),
        F("general writing", "Bullet points over paragraphs, please.", "Prefers bullet points over paragraphs."),
        F("general", "Plain English please, no jargon."),
        F("career work", "I really believe accessibility isn't optional, it's the baseline."),
        F("family milestone", "My partner Grace is a midwife at Saint Mary's.", "Partner Grace is a midwife."),
        F("milestone family", "We're expecting our first baby in early May.", "Expecting a first child in May 2024.",
          after="2024-02-15", before="2024-05-02"),
        F("milestone family", "Our daughter Ada was born on 2 May 2024.", "Daughter Ada was born on 2024-05-02.",
          after="2024-05-02"),
        F("pets home", "We have a whippet called Miso who is scared of bin lorries.", "Has a whippet named Miso."),
        F("hobby", "I'm restoring a 1978 Honda CB400 in the garage, very slowly.",
          "Is restoring a 1978 Honda CB400 motorbike."),
        F("sport health", "I'm training for the Coast to Coast ride on 21 June.",
          "Training for the Coast to Coast cycle ride on 2025-06-21.", after="2024-12-01", before="2025-06-21"),
        F("sport", "I did the Coast to Coast ride in June, 140 miles in two days.",
          "Completed the Coast to Coast ride in June 2025.", after="2025-06-21"),
        F("language family", "I'm learning Yoruba so I can talk properly with my grandmother in Ibadan.",
          "Is learning Yoruba to talk with his grandmother."),
        F("home finance", "We bought a terraced house in Levenshulme in 2023.", "Owns a terraced house in Levenshulme."),
        F("travel", "I'd rather do a city break than a beach holiday."),
        F("cooking", "I cook a big pot of jollof every Sunday."),
        F("family", "My brother Tobi lives in Leeds and we watch the football together."),
    ],
    "custom_instructions": [
        ("2024-01-10", None,
         "I'm Daniel, a product designer at a fintech in Manchester. I use Figma, React and TypeScript. I look after "
         "our design system.",
         "Use bullet points. Plain English. Mention accessibility when it's relevant."),
    ],
}

PRIYA = {
    "name": "Priya Raman",
    "email": "priya.raman@dal.ca",
    "colo": "YUL",
    "slots": {
        "first": "Priya", "city": "Halifax", "partner": "Sam", "pet": "Fennel", "company": "Dalhousie",
        "job": "PhD candidate in marine biology", "project": "the thesis", "blog": "the lab blog", "hometown": "Chennai",
        "sibling": "Arjun", "editor": "RStudio", "work_topic": "kelp forest recovery",
    },
    "code_langs": ["r", "r", "r", "python", "python", "shell"],
    "facts": [
        F("work code project career", "I'm a PhD candidate in marine biology at Dalhousie, working on kelp forest recovery.",
          "PhD candidate in marine biology at Dalhousie (kelp forest recovery)."),
        F("code", "I do most of my analysis in R with the tidyverse, and some Python.", "Uses R (tidyverse) and Python."),
        F("project", "My thesis uses six years of dive survey data from Nova Scotia.",
          "Thesis uses six years of Nova Scotia dive survey data."),
        F("milestone", "My defence is on 20 November 2025.", "PhD defence scheduled for 2025-11-20.",
          after="2025-03-01", before="2025-11-20"),
        F("milestone career", "I defended my PhD in November!", "Defended PhD in November 2025.", after="2025-11-20"),
        F("career", "I decided to accept the postdoc in Bergen.", "Accepted a postdoc in Bergen, Norway.",
          after="2025-07-01"),
        F("general", "Explain like I'm a colleague, skip the basics.", "Prefers expert-level explanations."),
        F("general writing", "Please cite sources when you can."),
        F("pets home", "My cat Fennel supervises all my writing from the keyboard.", "Has a cat named Fennel."),
        F("sport", "I boulder twice a week, it's the only thing that switches my brain off."),
        F("hobby", "I paint watercolours of tide pools on weekends."),
        F("family", "My brother Arjun lives in Toronto.", "Brother Arjun lives in Toronto."),
        F("language", "I'm learning Norwegian for the move.", after="2025-07-01"),
        F("family", "My partner Sam is a software developer who works remotely.", "Partner Sam is a software developer."),
    ],
    "custom_instructions": [
        ("2024-02-01", None,
         "I'm Priya, a marine biology PhD candidate in Halifax. R, tidyverse, LaTeX/Overleaf, Zotero.",
         "Explain like I'm a colleague. Cite sources when you can. Short paragraphs."),
    ],
}

# Persona topics.  A request is "Title :: what the person types"; W() windows
# it in time.  "points" are the sentences the assistant answers with.
MAYA["topics"] = {
    "project": {
        "requests": [
            W("Harbor migration plan :: I'm writing the plan for Harbor, our move of the shipment-tracking pipeline "
              "from cron scripts to Airflow. Can you help me outline the «stage» stage?", before="2025-03-10"),
            W("Airflow vs Dagster :: We're weighing Airflow against Dagster for Harbor. Can you give me an honest "
              "comparison for a team of three?", after="2024-10-01", before="2025-03-10"),
            W("Dagster announcement :: I decided to move the pipeline to Dagster. Help me write the announcement for "
              "the team channel, short and not salesy.", after="2025-03-10", before="2025-04-20"),
            W("Dagster asset layout :: Harbor runs on Dagster now. How should I model the «stage» step as assets "
              "partitioned by day?", after="2025-03-10"),
            "Harbor «stage» failure :: The «stage» job in Harbor failed last night with a duplicate key error on "
            "«table». What should I check first?",
            "Tracking events data contract :: Can you help me write a data contract for the tracking events coming "
            "from our carriers? Fields: shipment_id, carrier_code, event_type, occurred_at, location.",
            "Postmortem: stale ETA table :: Draft a short postmortem for the incident where the ETA table was «n» "
            "hours stale. Blameless tone.",
            "Harbor backfill strategy :: How would you backfill «n» months of tracking events into Postgres without "
            "locking «table»?",
            "Carrier API rate limits :: One of our carriers rate-limits us to «n» requests a second and we poll "
            "thousands of shipments. How should Harbor schedule the polling?",
        ],
        "followups": ["Can you make the «stage» part more concrete?", "Good. What would the rollback plan look like?",
                      "Shorter please, this is going in Slack.",
                      "What about idempotency if a carrier resends the same events?",
                      "How would you monitor it so I notice before the ops team does?"],
        "subjects": ["the «stage» step", "Harbor's rollout", "the backfill", "the data contract"],
        "headings": ["Goal", "Steps", "Risks", "Rollback", "Monitoring", "Open questions"],
        "points": [
            "Make every step idempotent: key the writes on event_id so a rerun can't create duplicates.",
            "Load into a staging table first, then merge into «table» in one transaction.",
            "Partition by event date; a daily partition is small enough to rerun in minutes.",
            "Keep the old cron job running in parallel for a week and diff the outputs.",
            "Alert on freshness, not just on failures: a job that silently does nothing is the worst case.",
            "Write the contract down as a JSON Schema and validate at the edge, before anything reaches Postgres.",
            "Backfill in chunks of a day, newest first, so the data people look at is fixed first.",
            "Use a lock or a run key so two runs of the «stage» job can never overlap.",
            "Log row counts in and out of each step; the mismatch tells you where data went missing.",
            "A short decision record now will save you explaining the choice again in six months.",
            "With three people, pick the tool that needs the least babysitting, not the one with most features.",
            "Retry carrier calls with backoff and jitter, and respect the Retry-After header.",
        ],
    },
    "milestone": {
        "requests": [
            W("Engagement announcement :: Jonas and I just got engaged! Help me write a short message for the family "
              "group chat, half in Swedish, half in English.", after="2024-06-15", before="2024-07-15"),
            W("Wedding budget :: We're getting married on 14 September 2025 in Sintra with about 70 guests. Can you "
              "build me a budget with categories? The total is around 18,000 euros.", after="2024-06-15",
              before="2025-09-14"),
            W("Guest transport to Sintra :: Half our guests fly in from Sweden for the wedding. What's the easiest "
              "way to get 35 people from Lisbon airport to Sintra?", after="2024-09-01", before="2025-09-14"),
            W("Vows help :: Help me write my vows. Short, a bit funny, and it should mention that Jonas proposed on "
              "a rainy ferry to Cacilhas.", after="2025-03-01", before="2025-09-14"),
            W("Wedding day timeline :: Can you make a timeline for the wedding day? Ceremony at 4pm, dinner at 7, the "
              "last train back to Lisbon is at 00:40.", after="2025-05-01", before="2025-09-14"),
            W("Thank-you cards :: We got married last weekend! Help me word thank-you cards, some in Swedish and "
              "some in English.", after="2025-09-14", before="2025-11-01"),
            W("Honeymoon ideas :: Honeymoon ideas for October: somewhere warm, reachable by train, "
              "vegetarian-friendly food.", after="2025-06-01", before="2025-10-01"),
            W("Date or venue first? :: Jonas and I keep talking about getting married. What should we decide first, "
              "the date or the venue?", before="2024-06-15"),
        ],
        "followups": ["Can you add a column for what's already paid?", "Make it a bit warmer.",
                      "What would you cut first if we go over budget?", "Can you translate that into Swedish?",
                      "What are we forgetting?"],
        "subjects": ["the wedding", "the guest list", "the budget", "the day's timeline"],
        "headings": ["Venue and food", "Guests", "Timeline", "Budget", "Things people forget"],
        "points": [
            "Venue and catering usually take about half of the budget; keep a 10% buffer for surprises.",
            "A chartered coach from the airport is cheaper per head than taxis once you pass about 20 people.",
            "Put the ceremony in the late afternoon in September; the light is softer and it's cooler.",
            "Give guests one page with times, addresses and the last train, in both languages.",
            "Ask a friend to be the point person on the day so nobody calls you about parking.",
            "Keep the vows to about a minute each; a single specific story says more than a list.",
            "Send thank-you cards within a month, and mention one thing each guest did or gave.",
            "Book the photographer early; the good ones go a year ahead.",
            "Plan a vegetarian menu for everyone rather than a separate option; it's simpler for the caterer.",
            "Leave 30 minutes of nothing in the timeline between the ceremony and dinner.",
        ],
    },
    "sport": {
        "requests": [
            W("Marathon training plan :: I'm training for my first marathon, Porto on 3 November. Can you build me a "
              "16-week plan with four runs a week?", after="2024-05-01", before="2024-10-20"),
            W("Long run fuelling :: My long run is «km» km this Sunday. What should I eat the night before? I'm "
              "vegetarian.", after="2024-05-01", before="2024-11-03"),
            W("Post-marathon recovery :: I ran the Porto Marathon in 4:12! What should recovery look like for the "
              "next two weeks?", after="2024-11-03", before="2024-12-01"),
            W("Knee pain when running :: My left knee hurts on the outside after about 10 km. Is that IT band? Which "
              "exercises help?", after="2024-08-10", before="2025-02-01"),
            "Strength routine for runners :: Give me a strength routine for runners I can do at home in 25 minutes.",
            "Running in the heat :: How should I pace an easy run when it's 30 degrees in «city»?",
        ],
        "followups": ["What if I can only run three times a week?", "And what about race day breakfast?",
                      "Can you turn that into a weekly table?", "How do I know if I'm overdoing it?"],
        "subjects": ["the training plan", "recovery", "pacing"],
        "headings": ["Weeks 1-4", "Weeks 5-12", "Taper", "Long runs", "Strength", "Warning signs"],
        "points": [
            "Keep about 80% of your running easy, at a pace where you could still talk in full sentences.",
            "Increase the weekly distance by no more than about 10%, with a lighter week every fourth week.",
            "The long run builds from «km» km to about 32 km three weeks before the race.",
            "Pain on the outside of the knee after a set distance is typical of the IT band; cut the distance, not all running.",
            "Side planks, clamshells and single-leg deadlifts twice a week help the hips keep the knee in line.",
            "The night before a long run, a big plate of pasta or rice with a simple sauce works better than anything fancy.",
            "Practise your race-day breakfast and gels on long runs, never for the first time on the day.",
            "After the marathon, walk and do easy spins for a week before any real running.",
            "In the heat, run by effort and heart rate and accept that the pace will be slower.",
            "Sleep is part of the plan; a bad week of sleep is a good reason to skip the hard session.",
        ],
    },
    "language": {
        "requests": [
            W("Portuguese correction :: I'm around A2 in Portuguese. Can you correct this and explain the mistakes?"
              "\n\n«pt_text»", before="2025-06-20"),
            "Por vs para :: What's the difference between 'por' and 'para' in European Portuguese? A few examples "
            "please.",
            W("B1 exam study plan :: My B1 exam is in June. Give me a six-week study plan, 30 minutes a day.",
              after="2025-04-01", before="2025-06-20"),
            W("What to read after B1 :: I passed B1! What should I read next to keep improving?",
              after="2025-06-20", before="2025-08-15"),
            "Personal infinitive :: Explain when to use the personal infinitive in Portuguese.",
            "Email to landlord in Portuguese :: How do I politely tell my landlord in Portuguese that the boiler is "
            "leaking again?",
        ],
        "followups": ["Can you give me five more examples?", "Is that the same in Brazilian Portuguese?",
                      "Can you quiz me on it?", "How would I say that more casually?"],
        "subjects": ["the grammar point", "the exam", "the correction"],
        "headings": ["Corrections", "Why", "Examples", "Practice"],
        "points": [
            "'Dizeram' should be 'disseram': dizer is irregular in the preterite.",
            "'Para' points at a goal or destination, 'por' at a cause, a route or an exchange: 'obrigada por tudo'.",
            "In European Portuguese the subject pronoun is usually dropped: 'fui ao mercado' rather than 'eu fui'.",
            "The personal infinitive takes an ending when the subject differs: 'é melhor irmos cedo'.",
            "Ten minutes of listening a day beats an hour once a week; podcasts from RTP are a good level.",
            "For the exam, practise the writing task with a timer; the word limit is strict.",
            "'Estava muito calor' is natural; 'era muito calor' is not.",
            "A polite opening for a complaint: 'Venho por este meio informar que...'.",
            "Read short novels by José Luís Peixoto or children's books first; newspapers are harder than they look.",
        ],
    },
    "pets": {
        "requests": [
            "Cat throwing up after breakfast :: Pixel, our grey rescue cat, keeps throwing up after breakfast. She's "
            "seven. What could it be?",
            "Keeping a cat busy :: What's a good way to keep a cat entertained while we're both at work?",
            W("Cat sitter or cattery :: We're away for ten days around the wedding. Cat sitter or cattery for Pixel?",
              after="2025-05-01", before="2025-09-14"),
            "Cat scratching the sofa :: Pixel has started scratching the sofa. How do I redirect her without yelling "
            "at her?",
        ],
        "followups": ["When should I take her to the vet?", "Any toys you'd recommend?", "Is wet food better?"],
        "subjects": ["Pixel", "the cat"],
        "headings": ["Likely causes", "What to try", "When to see the vet"],
        "points": [
            "Eating too fast is the most common reason a cat brings food straight back up; a slow feeder often fixes it.",
            "If she vomits more than once a week, loses weight or stops eating, see the vet.",
            "Two short play sessions a day with a wand toy tire a cat out more than a room full of toys.",
            "Puzzle feeders turn breakfast into a twenty-minute job while you're out.",
            "A cat sitter who visits twice a day keeps her in familiar surroundings, which most cats prefer.",
            "Put a tall, sturdy scratching post right next to the sofa arm she likes, then move it slowly.",
            "Double-sided tape on the sofa for a few weeks makes the post the more attractive option.",
        ],
    },
    "hobby": {
        "requests": [
            "Blog intro: «bread» :: I run a small sourdough blog called Crumb & Coast. Can you help me write an intro "
            "for a post about «bread»?",
            "Sluggish sourdough starter :: My starter Gunnar has been sluggish since it got colder. How do I perk "
            "him up?",
            "Baking schedule for «bread» :: Give me a baker's schedule for «bread» with a 75% hydration dough, baking "
            "Sunday morning.",
            "Autumn blog post ideas :: Suggest ten blog post ideas for the autumn, nothing too basic.",
            "More open crumb :: How do I get a more open crumb without the dough turning into a puddle?",
        ],
        "followups": ["Can you make the intro sound more like me, a bit dry and funny?",
                      "What if my kitchen is only 18 degrees?", "Write the ingredient list in grams.",
                      "Can you suggest a title for the post?"],
        "subjects": ["«bread»", "the starter", "the blog post"],
        "headings": ["Schedule", "Ingredients", "Intro draft", "Troubleshooting", "Post ideas"],
        "points": [
            "Feed the starter at a 1:5:5 ratio and keep it somewhere around 26°C; it will double again in a few days.",
            "Friday 21:00: feed the starter. Saturday 09:00: mix and autolyse. Saturday 10:00: add salt and start folds.",
            "Four sets of stretch and folds, thirty minutes apart, then leave the dough alone until it has grown by half.",
            "Shape, then cold-retard in the fridge overnight; bake straight from the fridge at 250°C with the lid on.",
            "For a more open crumb, build strength early with folds and go easy on the final shaping.",
            "At 18°C everything takes about twice as long; use warm water and watch the dough, not the clock.",
            "Intro idea: 'There are two kinds of Sunday: the ones with bread and the disappointing ones.'",
            "A rye loaf needs less kneading and more patience; it will never look like a wheat loaf, and that's fine.",
            "Post idea: a side-by-side of the same dough proofed for 8, 12 and 16 hours.",
            "Post idea: baking in a tiny Lisbon kitchen without a proper oven thermometer.",
            "For 1 loaf: 400 g bread flour, 100 g wholemeal, 375 g water, 100 g starter, 10 g salt.",
        ],
    },
}

DANIEL["topics"] = {
    "project": {
        "requests": [
            "Atlas token naming :: Atlas, our design system, has three different names for the same grey. Help me "
            "propose a token naming scheme.",
            W("Style Dictionary migration :: I decided to move our design tokens to Style Dictionary. What's the "
              "migration order you'd follow?", after="2025-02-03"),
            "Button component API :: What props should a Button component in a design system expose, and which "
            "should it not?",
            "Atlas roadmap :: Draft a one-page roadmap for Atlas for the next quarter, «stage» first.",
        ],
        "followups": ["How would you get engineers to actually adopt it?", "Make it shorter for the Slack post.",
                      "What about dark mode?"],
        "subjects": ["Atlas", "the tokens", "the component API"],
        "headings": ["Naming", "Migration", "Adoption", "Accessibility"],
        "points": [
            "Name tokens by purpose, not by value: color-text-muted rather than grey-600.",
            "Keep three layers: raw palette, semantic tokens, and component tokens only where needed.",
            "Migrate one component family at a time and ship a codemod for the renames.",
            "A Button needs variant, size, disabled and loading; colour overrides invite inconsistency.",
            "Document contrast ratios next to each colour token so nobody has to check by hand.",
            "Adoption follows convenience: make the right thing the easiest thing to import.",
        ],
    },
    "milestone": {
        "requests": [
            W("Hospital bag list :: Grace is due in early May. What should go in the hospital bag?",
              after="2024-02-15", before="2024-05-02"),
            W("Baby sleep :: Ada is «weeks» weeks old and wakes up every two hours. Is that normal?",
              after="2024-05-10", before="2024-10-01"),
            W("First birthday party :: Plan a small first birthday party for Ada, ten adults and three toddlers.",
              after="2025-03-20", before="2025-05-02"),
        ],
        "followups": ["What can I actually do to help Grace at night?", "Keep it cheap please."],
        "subjects": ["Ada", "the baby", "the party"],
        "headings": ["Essentials", "For the partner", "Nice to have"],
        "points": [
            "Waking every two to three hours is normal in the first months; feeding on demand is expected.",
            "Pack snacks, a phone charger with a long cable and something comfortable to wear home.",
            "Take the night feed before midnight so the other person gets one long block of sleep.",
            "For a first birthday, an hour and a half around nap time is plenty.",
            "Toddlers need a safe floor and a few toys more than decorations.",
        ],
    },
    "sport": {
        "requests": [
            W("Coast to Coast training :: I'm doing the Coast to Coast ride on 21 June. Build me a training plan with "
              "three rides a week.", after="2024-12-01", before="2025-06-01"),
            "Cycling nutrition :: What should I eat on a 70 mile ride?",
            "Back pain on the bike :: My lower back hurts after long rides. Bike fit or core strength?",
        ],
        "followups": ["What if it rains all week?", "How many hills should I include?"],
        "subjects": ["the ride", "training"],
        "headings": ["Base", "Build", "Fuelling", "Bike fit"],
        "points": [
            "Two short midweek rides and one long weekend ride that grows by about 10 miles every two weeks.",
            "Eat something every 45 minutes on long rides, before you feel hungry.",
            "Lower back pain on long rides is often a reach that's too long; a bike fit is worth it.",
            "Include one hilly ride a week; the Coast to Coast climbs come early.",
        ],
    },
    "language": {
        "requests": ["Yoruba greetings :: How do I greet my grandmother respectfully in Yoruba, morning and evening?",
                     "Yoruba tones :: Explain the three tones in Yoruba with simple examples."],
        "followups": ["How would I say 'I miss you'?", "How do I pronounce that?"],
        "subjects": ["Yoruba"],
        "headings": ["Greetings", "Tones", "Practice"],
        "points": ["'E kaaro ma' is a respectful good morning to an elder; 'e' marks respect.",
                   "Yoruba has high, mid and low tones, and the tone changes the meaning of a word.",
                   "Short voice calls where you use one new phrase each time work better than long lessons."],
    },
    "pets": {
        "requests": ["Whippet scared of noises :: Miso, our whippet, panics when the bin lorry comes. How can we help "
                     "him?",
                     "Dog and baby :: How do we introduce Miso to the baby safely?"],
        "followups": ["How long does that usually take?"],
        "subjects": ["Miso"],
        "headings": ["Short term", "Longer term"],
        "points": ["Give him a safe den away from the front of the house on bin day.",
                   "Play the sound quietly while he eats and increase it over weeks.",
                   "Let the dog sniff a blanket that smells of the baby before they meet."],
    },
    "hobby": {
        "requests": ["CB400 carburettor :: My 1978 Honda CB400 idles rough when warm. Where should I start with the "
                     "carbs?",
                     "Restoration order :: In what order should I restore a 1970s motorbike, frame, engine or wiring "
                     "first?"],
        "followups": ["Which tools do I really need?"],
        "subjects": ["the CB400"],
        "headings": ["Check first", "Then"],
        "points": ["Rough idle when warm often means an air leak at the intake boots.",
                   "Clean and synchronise the carbs before touching the jetting.",
                   "Do the wiring last; everything else gets in its way."],
    },
}

PRIYA["topics"] = {
    "project": {
        "requests": ["Kelp cover mixed model :: How should I model kelp cover with site as a random effect and year "
                     "as fixed?",
                     "Thesis chapter outline :: Help me outline chapter «n» of my thesis on urchin barrens.",
                     "Methods section edits :: Tighten this methods paragraph without losing detail:\n\n«paragraph»"],
        "followups": ["What would reviewers push back on?", "Can you make it more formal?"],
        "subjects": ["the model", "the chapter"],
        "headings": ["Model", "Diagnostics", "Writing"],
        "points": ["Percent cover is bounded, so a beta regression with a logit link fits better than a Gaussian.",
                   "With twelve sites, a random intercept for site is reasonable; check a random slope for year.",
                   "State the survey design before the statistics so a reader can picture the transects.",
                   "Reviewers will ask about spatial autocorrelation between neighbouring sites."],
    },
    "milestone": {
        "requests": [W("Defence preparation :: My PhD defence is on 20 November. Give me a prep plan for the last six "
                       "weeks.", after="2025-09-20", before="2025-11-20"),
                     W("Defence questions :: What questions do examiners usually ask in a marine ecology defence?",
                       after="2025-06-01", before="2025-11-20")],
        "followups": ["How do I handle a question I can't answer?"],
        "subjects": ["the defence"],
        "headings": ["Weeks 6-4", "Weeks 3-1", "On the day"],
        "points": ["Do two mock defences with people outside your lab.",
                   "Expect 'what would you do differently' and 'what's the broader significance'.",
                   "It's fine to say you don't know and explain how you would find out."],
    },
    "sport": {"requests": ["Finger pulley injury :: I tweaked a finger pulley bouldering. How long should I rest?"],
              "followups": ["Any rehab exercises?"], "subjects": ["the finger"], "headings": ["Rest", "Rehab"],
              "points": ["A mild pulley strain usually needs two to four weeks off hard crimping.",
                         "Start rehab with light hangs on big holds and build up slowly."]},
    "language": {"requests": [W("Learning Norwegian :: I'm moving to Bergen. Which Norwegian should I learn, and how "
                                "do I start?", after="2025-07-01")],
                 "followups": ["What about the Bergen dialect?"], "subjects": ["Norwegian"], "headings": [],
                 "points": ["Learn Bokmål for reading and writing; you'll hear the Bergen dialect everywhere.",
                            "Start with a course for English speakers and add Norwegian radio early."]},
    "pets": {"requests": ["Cat on the keyboard :: Fennel keeps lying on my keyboard. How do I make a better spot for "
                          "her?"],
             "followups": ["Would a heated pad help?"], "subjects": ["Fennel"], "headings": [],
             "points": ["Put a warm bed right next to the laptop; cats pick the keyboard for the warmth.",
                        "A heated pad on low is safe and usually wins."]},
    "hobby": {"requests": ["Watercolour tide pools :: How do I paint wet rocks in watercolour so they look shiny?"],
              "followups": ["Which paper weight?"], "subjects": ["the painting"], "headings": [],
              "points": ["Leave the highlights as white paper; you can't add them back later.",
                         "Paint the rock wet-in-wet and drop in darker pigment at the edges."]},
}

PERSONAS = [MAYA, DANIEL, PRIYA]

# ================================================================ shared content

POOLS = {
    "table": ["shipments", "tracking_events", "carriers", "orders", "invoices", "customers", "routes", "warehouses",
              "deliveries", "eta_predictions"],
    "col": ["created_at", "carrier_id", "status", "eta", "customer_id", "weight_kg", "route_id", "updated_at",
            "country_code", "delivered_at"],
    "metric_col": ["revenue_eur", "delivery_hours", "late_count", "order_count"],
    "key": ["shipment_id", "order_id", "customer_id", "event_id"],
    "metric": ["revenue", "delivery time", "late shipments", "order volume", "failed deliveries"],
    "n": ["3", "5", "7", "10", "12", "20"],
    "km": ["18", "22", "26", "28", "30", "32"],
    "weeks": ["3", "5", "6", "8", "10"],
    "stage": ["ingest", "dedupe", "enrich", "ETA", "load", "export"],
    "dish": ["shakshuka", "mushroom risotto", "dal tadka", "vegetable lasagne", "bean chilli", "miso aubergine",
             "pad thai", "caldo verde", "gnocchi with brown butter", "lentil soup", "halloumi tacos", "ratatouille",
             "kimchi fried rice", "chickpea curry", "spinach and feta pie", "tomato galette"],
    "ingredient2": ["chickpeas", "white beans", "lentils", "tofu", "black beans", "edamame"],
    "activity2": ["a slow lunch by the water", "a walk through the market", "a swim", "a local bakery crawl",
                  "a short hike to a viewpoint"],
    "ingredient": ["chickpeas", "spinach", "feta", "tofu", "aubergine", "sweet potato", "leeks", "mushrooms",
                   "lentils", "courgette", "black beans", "coconut milk", "cauliflower", "halloumi", "butternut squash"],
    "bread": ["a rye loaf", "a seeded sourdough", "focaccia", "pão de Deus", "cardamom buns", "a spelt boule",
              "cinnamon knots", "a country loaf"],
    "place": ["the Azores", "Porto", "Seville", "Kyoto", "Copenhagen", "the Dolomites", "Ljubljana", "Madeira",
              "Edinburgh", "Lyon", "Granada", "Bergen", "Naples", "Tallinn", "Marrakech", "Valencia"],
    "month": ["March", "April", "May", "June", "September", "October", "November"],
    "activity": ["a coastal hike", "the old town on foot", "the food market", "a boat trip", "the botanical garden",
                 "a day trip to the villages nearby", "a long lunch", "a viewpoint at sunset", "the thermal baths",
                 "a cycling loop", "a small museum"],
    "recipient": ["my landlord", "a recruiter", "our accountant", "a carrier's support team", "my manager",
                  "a conference organiser", "the venue", "a client"],
    "relative": ["mum", "dad", "sister", "grandmother", "best friend", "colleague who is leaving"],
    "ask": ["a deadline extension", "a refund", "feedback on a draft", "a quick call", "an invoice correction"],
    "audience": ["my manager", "a non-technical audience", "new joiners", "a ten-year-old"],
    "news_topic": ["the EU AI Act timeline", "PostgreSQL 18 features", "train strikes in Portugal",
                   "the new Python release", "heat pump subsidies", "the Lisbon housing market"],
    "product": ["noise-cancelling headphones", "standing desks", "running watches", "e-readers",
                "robot vacuums", "mechanical keyboards"],
    "price": ["150", "200", "300", "400"],
    "image_subject": ["a loaf of sourdough on a windowsill at dawn", "a cat asleep on a laptop",
                      "a tram climbing a steep street", "a lighthouse in a storm", "a bicycle made of bread"],
    "style": ["watercolour", "flat vector", "linocut", "isometric", "1970s travel poster"],
    "purpose": ["a blog header", "a birthday card", "a slide title page", "my desktop wallpaper"],
    "csv": ["shipments_q3.csv", "deliveries_2024.csv", "carrier_sla_report.csv", "late_deliveries_march.csv"],
    "analysis": ["find which carrier is late most often", "plot the monthly trend", "spot outliers",
                 "summarise the main patterns", "check for missing values and duplicates"],
    "constraint": ["we only have a week", "the budget is half that", "I can't use pandas", "it has to run on a laptop",
                   "it needs to work offline"],
    "entity": ["Shipment", "Invoice", "Customer", "Route", "Booking"],
    "pt_text": [
        "Ontem eu fui ao mercado e comprei muitos legumes. Depois eu cozinhei uma sopa para os meus amigos, mas "
        "a sopa era muito salgada. Eles dizeram que gostaram.",
        "No fim de semana eu e o meu namorado fomos para Sintra. Estava muito calor e nós andámos muito. Eu gosto "
        "muito de Sintra porque é muito verde.",
        "Eu trabalho como engenheira de dados. No meu trabalho eu uso Python todos os dias e às vezes eu tenho "
        "reuniões em português, mas é difícil para mim.",
    ],
    "paragraph": [
        "We surveyed twelve sites every August between 2018 and 2023 using fixed 30 m transects, and recorded "
        "kelp percent cover, urchin density and substrate in 1 m2 quadrats at 5 m intervals along each transect.",
        "This week I want to talk about hydration, because it is the single thing people ask me about most, and "
        "also the thing I got wrong for the longest time when I started baking bread at home.",
        "Our new onboarding flow reduced the number of support tickets in the first week by almost a third, "
        "mostly because people no longer got stuck on the identity check.",
    ],
}

TOPIC_WEIGHTS = {
    "code": 22, "project": 9, "data_analysis": 4, "cooking": 7, "travel": 7, "writing": 8, "sport": 5,
    "milestone": 5, "pets": 3, "language": 4, "hobby": 5, "general": 12, "news": 4, "career": 3, "home": 3,
    "image": 2,
}
# Persona topics fall back to these generic facts tags.
TOPIC_TAGS = {"code": "code", "project": "project", "data_analysis": "work", "cooking": "cooking", "travel": "travel",
              "writing": "writing", "sport": "sport", "milestone": "milestone", "pets": "pets",
              "language": "language", "hobby": "hobby", "general": "general", "news": "general",
              "career": "career", "home": "home", "image": "hobby"}

# Generic topics every persona uses; persona details come in through «slots».
GENERIC_TOPICS = {
    "cooking": {
        "requests": [
            "Quick dinner with «ingredient» :: What can I make tonight with «ingredient», some «ingredient2» and "
            "rice? Thirty minutes max.",
            "«dish» recipe :: Give me a recipe for «dish» for four people.",
            "Dinner party menu :: I'm having six friends over on Saturday. Can you plan a menu I can mostly cook ahead?",
            "Substitute for «ingredient» :: What's a good substitute for «ingredient» in «dish»?",
            "Meal prep for the week :: Plan five weekday lunches I can prep on Sunday in under two hours.",
            "Leftover «ingredient» :: How long does cooked «ingredient» keep in the fridge, and what can I do with it?",
        ],
        "followups": ["Can you make it spicier?", "What can I prep the day before?", "Give me a shopping list.",
                      "Can you scale it down to two people?", "What wine or drink goes with it?"],
        "subjects": ["«dish»", "the menu", "the recipe"],
        "headings": ["Ingredients", "Method", "Make-ahead", "Swaps", "Serving", "Shopping list"],
        "points": [
            "Start by softening the onion slowly, about «n» minutes, before anything else goes in.",
            "A squeeze of lemon right at the end lifts the whole dish.",
            "Toast the spices in the oil first; it makes a real difference to the flavour.",
            "If you want more protein, stir in a tin of «ingredient2» for the last ten minutes.",
            "It keeps for three days in the fridge and freezes well in portions.",
            "Season in layers: a little salt at each stage rather than all at the end.",
            "Let it rest for five minutes before serving so the flavours settle.",
            "Roast the «ingredient» at 220°C until the edges catch; that char is the point.",
            "Cook the base the day before; it tastes better on day two anyway.",
            "A spoon of miso or a splash of soy sauce adds depth without meat.",
            "For a dinner party, pick one dish that needs last-minute attention and make everything else ahead.",
            "Serve it with something crunchy and something fresh: toasted seeds and a sharp salad.",
            "Leftovers keep three to four days in a closed container in the fridge.",
            "Smoked paprika gives a similar depth if you're missing «ingredient».",
            "Use a wide pan so the vegetables brown instead of steaming.",
            "Keep a jar of quick-pickled red onions in the fridge; they rescue almost any plate.",
            "Cook extra rice and chill it overnight; day-old rice makes much better fried rice.",
            "Add the garlic after the onions have softened so it doesn't burn.",
            "Finish with fresh herbs off the heat; parsley, coriander or dill all work.",
            "Taste before serving and adjust: usually it needs a pinch more salt or a splash of acid.",
            "For four people, plan on about 80 g of dry lentils or rice per person.",
            "A tray bake is the least washing-up for a weeknight: everything on one sheet at 200°C for 35 minutes.",
        ],
    },
    "travel": {
        "requests": [
            "«place» itinerary :: Plan a «n»-day trip to «place» in «month». We like hiking and good food, not too "
            "many museums.",
            "Train to «place» :: What's the best way to get from «city» to «place» by train?",
            "Packing list for «place» :: Give me a packing list for a week in «place» in «month».",
            "«place» in «month» :: Is «month» a good time to visit «place»? What's the weather like?",
            "One day in «place» :: We have one free day in «place». What would you do with it?",
        ],
        "followups": ["Can you swap day two for something more relaxed?", "What about rainy-day options?",
                      "Where should we stay?", "How much should we budget per day?"],
        "subjects": ["«place»", "the itinerary", "the trip"],
        "headings": ["Day 1", "Day 2", "Day 3", "Getting there", "Where to eat", "Budget", "Packing"],
        "points": [
            "Start with «activity» in the morning, then «activity2» in the afternoon.",
            "Book the trains a few weeks ahead; prices jump close to the date.",
            "«month» is shoulder season, so expect mild days and cool evenings.",
            "Keep one evening free; the best meals are usually the unplanned ones.",
            "A light rain jacket is worth the space in the bag.",
            "Public transport is good enough that you don't need a car.",
            "Go early to the popular viewpoints, before the tour buses arrive.",
            "Many restaurants close between lunch and dinner, so plan for snacks.",
            "Stay near the station rather than the old town; it's cheaper and you'll walk everywhere anyway.",
            "Budget roughly 80 to 120 euros a day per person for food, transport and one paid activity.",
            "Pack layers: mornings can be 10 degrees cooler than the afternoon.",
            "Comfortable shoes that are already broken in matter more than anything else on the list.",
            "Buy a regional rail pass if you'll take more than three trains; it usually pays for itself.",
            "Leave the last afternoon light so you're not rushing to the station.",
            "Download offline maps before you go; mountain valleys often have no signal.",
            "Lunch is the best-value meal in most of southern Europe; many places have a fixed-price menu.",
            "Check opening days: a lot of smaller places close on Mondays.",
            "If the weather turns, swap the hike for «activity2» and move the hike to the next day.",
            "Carry some cash for small cafés and markets.",
            "A day pack with water, a snack and a layer covers most day trips.",
        ],
    },
    "writing": {
        "requests": [
            "Email to «recipient» :: Can you rewrite this email to «recipient» so it sounds firmer but still "
            "polite?\n\n«email_draft»",
            "Birthday message :: Help me write a birthday message for my «relative», warm but not cheesy.",
            "Proofread a paragraph :: Proofread this paragraph and keep my voice:\n\n«paragraph»",
            "LinkedIn post :: Write a short LinkedIn post about «work_topic». No emojis, no hashtags.",
            "Subject lines :: Give me three subject lines for an email asking «recipient» for «ask».",
        ],
        "followups": ["A bit less formal please.", "Can you cut it to three sentences?", "Make the ending stronger.",
                      "Now a version for «audience»."],
        "subjects": ["the email", "the message", "the draft"],
        "headings": ["Version A", "Version B", "What I changed"],
        "points": [
            "I moved the ask to the first paragraph so it can't be missed.",
            "I cut the apology; you have nothing to apologise for here.",
            "Short sentences read as confident, so I split the long one in the middle.",
            "I kept your phrasing where it sounded like you and only fixed the grammar.",
            "The closing line now gives a clear next step and a date.",
            "I replaced the passive voice so it's clear who does what.",
            "\"Following up on the invoice from 3 March: it still shows the wrong amount. Could you correct it by Friday?\"",
            "\"Happy birthday! Thank you for always being the first to call and the last to hang up.\"",
            "Subject: Quick question about «ask»",
            "Subject: Next step on «ask» by Friday?",
            "I removed 'just' and 'sorry' twice; they undercut the request.",
            "The first line now says why you're writing, so the reader knows what to do with it.",
            "I kept it under 120 words; anything longer gets skimmed.",
            "I added a specific date, which makes it easier to say yes.",
            "'Thanks for your patience' reads better than 'sorry for the delay' here.",
            "The tone is friendly but leaves no doubt that you expect an answer.",
        ],
    },
    "career": {
        "requests": [
            "Asking for a raise :: How do I ask for a raise when the company just had a flat quarter?",
            "Interview prep :: Prepare me for a senior «job» interview next week. What will they ask?",
            "Giving feedback :: How do I give feedback to a colleague whose pull requests are always huge?",
            "Job offer questions :: I have an offer from a bigger company. What questions should I ask before "
            "deciding?",
            "1:1 agenda :: Help me put together an agenda for my 1:1 with my manager.",
        ],
        "followups": ["What if they say no?", "Can you role-play the interviewer?", "Make it less confrontational."],
        "subjects": ["the conversation", "the offer", "the interview"],
        "headings": ["Before the meeting", "What to say", "If it goes badly", "Follow-up"],
        "points": [
            "Anchor the conversation in what you've delivered this year, with numbers.",
            "Ask an open question first and let them talk.",
            "Write down the two or three outcomes you want before you go in.",
            "Separate the feedback about the work from anything about the person.",
            "Ask what success looks like in the first six months.",
            "It's fine to ask for a few days to think; nobody expects an instant yes.",
            "Suggest a concrete change, like splitting pull requests by feature flag, rather than a general complaint.",
            "If the answer is 'not now', ask what would need to be true in six months for it to be yes.",
            "Expect a system design question and one about a project that went wrong.",
            "Prepare two stories with a clear problem, what you did, and a measurable result.",
            "Look up the salary range for the role before the conversation, not after.",
            "Ask your manager how they would describe your impact; their words are useful later.",
            "Schedule the follow-up before you leave the room, even if it's just a date.",
            "If you're nervous, rehearse the first two sentences out loud; the rest follows.",
        ],
    },
    "home": {
        "requests": [
            "Emergency fund :: How big should an emergency fund be, and where should I keep it?",
            "Index funds vs ETFs :: Explain the difference between index funds and ETFs like I have ten minutes.",
            "Rent vs buy in «city» :: Can you walk me through a rent vs buy comparison for «city»?",
            "Dripping tap :: Our kitchen tap drips. Can I fix it myself without calling a plumber?",
            "Balcony plants :: Which herbs and plants survive a sunny balcony in «city» all summer?",
            "Monthly budget :: Help me set up a simple monthly budget with four categories.",
        ],
        "followups": ["What would you do in my place?", "Can you put the numbers in a table?"],
        "subjects": ["the budget", "the fund", "the plants"],
        "headings": ["The short version", "Numbers", "What to watch out for"],
        "points": [
            "Three to six months of fixed costs is the usual range.",
            "Keep it somewhere boring and accessible, like a savings account.",
            "Compare the total cost over ten years, not the monthly payment.",
            "Turn off the water under the sink before you open anything.",
            "Rosemary, thyme and oregano love heat and forgive missed watering.",
            "Fees matter more than picking the perfect fund.",
            "A dripping tap is usually a worn washer or cartridge, a ten-euro part.",
            "Four categories are enough: fixed costs, food, fun and savings.",
            "Automate the savings transfer on payday so it never depends on willpower.",
            "Look at the last three months of statements to get realistic numbers.",
            "A broad, low-cost global index fund is a sensible default for long-term money.",
            "Keep the old part when you go to the hardware shop; they can match it.",
            "Water deeply twice a week rather than a little every day.",
            "Review the budget once a month for ten minutes, not every day.",
        ],
    },
    "news": {
        "requests": ["«news_topic» :: What's the latest on «news_topic»?",
                     "Best «product» under «price» euros :: Compare a few «product» under «price» euros.",
                     "«product» reviews :: Search for recent reviews of «product» and summarise them."],
        "followups": ["Which one would you pick?", "Any newer sources?"],
        "subjects": ["«news_topic»", "«product»"],
        "headings": ["Summary", "Details", "Sources"],
        "points": ["The main change takes effect next year, with a transition period.",
                   "Reviews agree on battery life but disagree on comfort.",
                   "Prices have dropped since the newer model came out.",
                   "Several outlets report the same numbers, so they look reliable.",
                   "The official announcement has the details; the news coverage mostly repeats it.",
                   "For most people the mid-range option is the sweet spot.",
                   "The cheapest option is fine if you don't need the extra features.",
                   "Battery life and comfort matter more day to day than the spec sheet suggests."],
    },
    "image": {
        "requests": ["Illustration: «image_subject» :: Make an illustration of «image_subject» in a «style» style for "
                     "«purpose».",
                     "«style» drawing :: Can you draw «image_subject»? «style» style, warm colours."],
        "followups": ["Make it less busy.", "Same but wider, for a banner."],
        "subjects": ["the image"],
        "headings": [],
        "points": ["Here's the image.", "I kept the palette warm and the composition simple."],
    },
    "general": {
        "requests": [],
        "followups": ["Is that still true today?", "What's a good book on this?", "How do we know that?",
                      "Can you give me a concrete example?"],
        "subjects": ["the question", "the science behind it"],
        "headings": ["In short", "Why", "An example", "Caveats", "Further reading"],
        "points": [
            "The short version holds up well, but the details depend on the conditions.",
            "Researchers measured this directly in the 1990s, and later studies confirmed it.",
            "A simple way to see it at home is to compare two cases side by side.",
            "It's a common misconception that the effect is instant; it builds up over time.",
            "The numbers vary between sources, but the order of magnitude is the same.",
            "For most everyday purposes the simple model is good enough.",
            "The key idea fits in one sentence, and everything else is detail on top of it.",
            "Textbooks simplify this, but the simplification is reasonable.",
            "Scientists still argue about the details, not about the basic mechanism.",
            "A good analogy is water flowing downhill: it takes the easiest path available.",
            "If you want to go deeper, a popular-science book is a better start than papers.",
        ],
    },
    "code": {"requests": [], "followups": [], "headings": [], "points": [],
             "subjects": ["the «col» column", "the query on «table»", "the retry logic", "the job"]},
    "data_analysis": {
        "requests": [],
        "followups": ["Can you break it down by month?", "Which carrier should we talk to first?",
                      "Export the summary as a table please."],
        "subjects": ["«csv»", "the late deliveries"],
        "headings": ["What the data shows", "Caveats", "Next steps"],
        "points": [
            "The file has a handful of rows with missing delivery dates; I left them out of the averages.",
            "Late deliveries cluster at the end of each month, which points at capacity rather than routing.",
            "One carrier accounts for almost half of the late shipments while handling a quarter of the volume.",
            "The trend is flat until March and then climbs steadily.",
            "There are 37 exact duplicate rows, probably from a double export.",
        ],
    },
}

# Generic Q&A: short, hand-written, so general questions read naturally.
GENERAL_QA = [
    ("Why is the sky blue?", "Why is the sky blue?",
     "Sunlight is scattered by the molecules in the air, and shorter wavelengths scatter much more than longer ones "
     "(Rayleigh scattering goes with 1/λ⁴). Blue light is scattered all over the sky, so wherever you look away from "
     "the sun you see blue. At sunset the light crosses much more air, the blue is scattered out, and you are left "
     "with reds and oranges."),
    ("How vaccines work", "Can you explain how mRNA vaccines work, simply?",
     "An mRNA vaccine delivers instructions for one harmless piece of a virus, usually a surface protein. Your cells "
     "read the instructions, make that protein for a short while, and the immune system learns to recognise it. The "
     "mRNA itself breaks down within days and never enters the cell nucleus."),
    ("Compound interest", "How does compound interest actually work?",
     "You earn interest on the money you put in and on the interest already earned. With 5% a year, 1,000 becomes "
     "1,050 after one year and 1,102.50 after two. The growth looks slow at first and then speeds up, which is why "
     "starting early matters more than the exact rate."),
    ("Jet lag tips", "What actually helps with jet lag?",
     "Light is the strongest signal: get daylight in the morning at your destination after flying east, and in the "
     "evening after flying west. Shift your sleep by an hour a day for a few days before, keep caffeine to the "
     "morning, and a low dose of melatonin at the new bedtime helps some people."),
    ("Why bread goes stale", "Why does bread go stale, and why does toasting fix it?",
     "Staling is mostly starch retrogradation: the starch that gelatinised in the oven slowly recrystallises and "
     "pushes water out, so the crumb firms up. Heat melts those crystals again, which is why toast or a few minutes "
     "in the oven brings a loaf back for a while. The fridge speeds staling up."),
    ("Tides explained", "What causes the tides?",
     "The moon's gravity pulls slightly harder on the side of the earth facing it than on the far side. That "
     "difference stretches the oceans into two bulges, and as the earth turns you pass through both, so most coasts "
     "get two high tides a day. The sun adds a smaller effect: spring tides when they line up, neap tides when not."),
    ("Sleep and memory", "Does sleep really help memory?",
     "Yes. During deep sleep the brain replays recent experiences and moves them from short-term storage in the "
     "hippocampus to longer-term storage in the cortex. Studies consistently show better recall after a night's "
     "sleep than after the same time awake, and a short nap helps too."),
    ("Electric cars and cold", "Why do electric cars lose range in winter?",
     "Cold slows the chemical reactions in the battery, so less energy is available, and heating the cabin takes "
     "energy that a petrol car gets for free from engine waste heat. Heat pumps and preconditioning while plugged in "
     "reduce the loss a lot."),
    ("Roman concrete", "Why has Roman concrete lasted so long?",
     "Roman builders mixed lime with volcanic ash, and lumps of quicklime left in the mix let cracks heal "
     "themselves: water seeping in dissolves calcium that recrystallises and seals the crack. In seawater, the ash "
     "reacts to grow new minerals that make the material stronger over time."),
    ("How GPS works", "How does GPS know where I am?",
     "Each satellite broadcasts its position and the exact time. Your phone measures how long each signal took to "
     "arrive, which gives a distance, and with four or more satellites it can solve for your position and its own "
     "clock error. Relativity has to be corrected for, or the error would grow by kilometres a day."),
    ("Caffeine half-life", "How long does caffeine stay in the body?",
     "The half-life is about five hours in most adults, so half of an afternoon coffee is still around at bedtime. "
     "It varies a lot between people, and it is longer in pregnancy and with some medications."),
    ("Sourdough science", "What is actually happening in a sourdough starter?",
     "A starter is a stable community of wild yeasts and lactic acid bacteria. The bacteria produce lactic and "
     "acetic acid, which keeps other microbes out and gives the sour taste, while the yeast produces the carbon "
     "dioxide that raises the bread. Temperature shifts the balance: warmer favours milder, lactic flavours."),
    ("Inflation basics", "Why does inflation happen?",
     "Prices rise in general when demand grows faster than what the economy can produce, when costs like energy "
     "jump, or when people expect prices to rise and act on it. Central banks raise interest rates to cool demand, "
     "which works slowly, usually over one to two years."),
    ("Northern lights", "What makes the northern lights?",
     "Charged particles from the sun are guided by the earth's magnetic field towards the poles, where they hit "
     "oxygen and nitrogen high in the atmosphere. The gases glow: green and red from oxygen, blue and purple from "
     "nitrogen. Strong solar storms push the aurora much further south."),
    ("Learning a language", "What's the most effective way to learn a language as an adult?",
     "Lots of comprehensible input, short daily practice and speaking early. Spaced repetition for vocabulary, "
     "reading and listening slightly above your level, and regular conversation with feedback beat long weekly "
     "sessions. Consistency matters more than the method."),
]

FOLLOWUPS = [
    "Thanks! Can you make it shorter?", "Perfect, thank you.", "Can you explain the second point in more detail?",
    "What would you change if «constraint»?", "Can you put that in a table?", "Great. Now a version for «audience».",
    "Hmm, that's not quite what I meant. I was asking about «subject» specifically.", "ok", "Why?",
    "That works, thanks. One more thing: how would I explain «subject» to «audience»?",
    "Can you give me an example?", "Are you sure about that?",
]

INTROS = ["Here's a version that should work.", "Sure. Here's how I'd do it.", "Short answer first, then details.",
          "Here's a plan.", "Good idea. A few options:", "Here's what I'd suggest.", "Got it.", "Here you go."]
# Said after a point, to any topic: what makes answers read like a chat model's.
ELABORATIONS = [
    "That's the part most people skip, and it matters most.", "It sounds fussy, but it pays off quickly.",
    "You'll notice the difference the first time you try it.", "If that feels like too much, start with just this.",
    "This is also the easiest thing to undo if it doesn't work for you.", "It's a small change with a big effect.",
    "I'd do this first and see how far it gets you.", "Most of the time this alone solves it.",
    "The exact numbers matter less than doing it consistently.", "Worth writing down so you don't have to remember it.",
    "Don't worry about getting it perfect the first time.", "There's no single right answer here; this is a sensible default.",
    "If you're short on time, this is the one to keep.", "It's easy to overthink this part.",
]
INTRO_LINES = [
    "Here's how I'd think about «subject».", "Short version first, then the details on «subject».",
    "A few things matter most for «subject», roughly in this order.", "Happy to help with «subject». Here's a plan.",
    "Good question about «subject».", "Let's break «subject» down.",
    "There are a couple of ways to approach «subject». Here's the one I'd pick.",
    "Here's a practical take on «subject», assuming you want something you can act on today.",
]
OPENERS = ["In practice: ", "Tip: ", "Worth knowing: ", "One thing people miss: ", "Also: "]
ALSO = ["Also, ", "Another thing: ", "Different question. ", "Related: ", "", "Oh and ", "Next: "]
GENERIC_HEADINGS = ["First", "Then", "Also", "Finally", "Watch out for", "Optional"]
CODE_VARIANT_NOTES = ["Good catch. Here's the fixed version.", "Here's a version that handles that case.",
                      "That error means «col» isn't in the data you passed; check the column names first.",
                      "For that size, do it in batches:", "Same idea, with type hints and a test:"]
OUTROS = ["Want me to adjust anything?", "Happy to go deeper on any of these.", "Let me know how it goes.",
          "If you share more details I can tailor it.", "", "", ""]

THOUGHT_LINES = [
    "The user is asking about «subject». I should keep it concise and lead with the key point.",
    "Let me think about what they already tried with «subject» before suggesting anything.",
    "They mentioned a constraint earlier, so the answer has to respect it.",
    "I'll check whether the numbers add up before answering.",
    "A short list with one example each is probably the most useful format here.",
    "I shouldn't assume too much about their setup; I'll state the assumption.",
]
THOUGHT_SUMMARIES = ["Planning the answer", "Checking the details", "Weighing the options", "Structuring the reply"]

# ---- code help: (request, code, explanation); «slots» are filled per message.
CODE_TASKS = {
    "python": [
        ("pandas dedupe by «key» :: How do I deduplicate rows in a pandas DataFrame, keeping the latest «col» per «key»?",
         "df = (\n    df.sort_values(\"«col»\")\n      .drop_duplicates(subset=[\"«key»\"], keep=\"last\")\n"
         "      .reset_index(drop=True)\n)",
         "Sorting first makes `keep=\"last\"` mean \"latest\"; `drop_duplicates` keeps the first row it sees otherwise."),
        ("Retry with backoff :: Write a function that retries an HTTP call with exponential backoff.",
         "import random\nimport time\n\nimport httpx\n\n\ndef get_with_retry(url: str, attempts: int = 5) -> httpx.Response:\n"
         "    for attempt in range(attempts):\n        try:\n            response = httpx.get(url, timeout=10)\n"
         "            response.raise_for_status()\n            return response\n"
         "        except (httpx.TransportError, httpx.HTTPStatusError):\n            if attempt == attempts - 1:\n"
         "                raise\n            time.sleep(2 ** attempt + random.random())\n"
         "    raise RuntimeError(\"unreachable\")",
         "The jitter (`random.random()`) stops many workers from retrying in lockstep."),
        ("Load CSV into Postgres :: What's the fastest way to load a 2 GB CSV into PostgreSQL from Python?",
         "import psycopg\n\nwith psycopg.connect(DSN) as conn, conn.cursor() as cur:\n"
         "    with open(\"«table».csv\", \"rb\") as f, cur.copy(\n"
         "        \"COPY «table» FROM STDIN WITH (FORMAT csv, HEADER true)\"\n    ) as copy:\n"
         "        while chunk := f.read(1 << 20):\n            copy.write(chunk)",
         "`COPY` streams the file in one statement; it is one to two orders of magnitude faster than inserts."),
        ("Stream a huge JSON array :: How do I read a huge JSON array without loading it all into memory?",
         "import ijson\n\nwith open(\"«table».json\", \"rb\") as f:\n    for item in ijson.items(f, \"item\"):\n"
         "        handle(item)",
         "`ijson` yields one element of the top-level array at a time, so memory stays flat."),
        ("pytest schema fixture :: Write a pytest fixture that gives each test its own Postgres schema.",
         "import uuid\n\nimport pytest\n\n\n@pytest.fixture\ndef schema(conn):\n"
         "    name = f\"test_{uuid.uuid4().hex[:8]}\"\n    conn.execute(f\"CREATE SCHEMA {name}\")\n"
         "    conn.execute(f\"SET search_path TO {name}\")\n    yield name\n"
         "    conn.execute(f\"DROP SCHEMA {name} CASCADE\")",
         "Dropping with `CASCADE` in the teardown keeps the database clean even when a test fails."),
        ("Count rows by «col» :: Group a list of dicts by «col» and count them.",
         "from collections import Counter\n\ncounts = Counter(row[\"«col»\"] for row in rows)\n"
         "for value, count in counts.most_common():\n    print(f\"{value}: {count}\")",
         "`Counter` is enough here; pandas would be overkill for a list in memory."),
        ("ISO timestamps to UTC :: How do I parse ISO timestamps with offsets and convert them to UTC?",
         "from datetime import datetime, timezone\n\n\ndef to_utc(value: str) -> datetime:\n"
         "    parsed = datetime.fromisoformat(value)\n    if parsed.tzinfo is None:\n"
         "        parsed = parsed.replace(tzinfo=timezone.utc)\n    return parsed.astimezone(timezone.utc)",
         "Since Python 3.11 `fromisoformat` accepts a trailing `Z` and most ISO 8601 forms."),
        ("«entity» dataclass :: Write a dataclass for a «entity» with some validation.",
         "from dataclasses import dataclass\n\n\n@dataclass(frozen=True, slots=True)\nclass «entity»:\n"
         "    id: str\n    weight_kg: float\n    country_code: str\n\n    def __post_init__(self):\n"
         "        if self.weight_kg <= 0:\n            raise ValueError(\"weight must be positive\")\n"
         "        if len(self.country_code) != 2:\n            raise ValueError(\"country code must be ISO alpha-2\")",
         "`frozen=True` makes instances hashable and safe to share; `slots=True` keeps them small."),
        ("Async concurrency limit :: How do I run async tasks with a concurrency limit?",
         "import asyncio\n\n\nasync def run_all(items, limit=10):\n    semaphore = asyncio.Semaphore(limit)\n\n"
         "    async def one(item):\n        async with semaphore:\n            return await fetch(item)\n\n"
         "    return await asyncio.gather(*(one(i) for i in items))",
         "The semaphore caps how many `fetch` calls are in flight at once."),
        ("Nightly Airflow DAG :: Write an Airflow DAG that runs the «stage» job every night at 2am.",
         "from datetime import datetime\n\nfrom airflow import DAG\nfrom airflow.operators.python import PythonOperator\n\n"
         "with DAG(\n    dag_id=\"«stage»_nightly\",\n    schedule=\"0 2 * * *\",\n    start_date=datetime(2024, 1, 1),\n"
         "    catchup=False,\n) as dag:\n    PythonOperator(task_id=\"«stage»\", python_callable=run_«stage»)",
         "`catchup=False` stops Airflow from backfilling every night since the start date."),
        ("Dagster asset on «table» :: How do I write a Dagster asset that depends on «table»?",
         "from dagster import asset\n\n\n@asset(deps=[\"«table»\"])\ndef «table»_daily_summary(context):\n"
         "    rows = load(\"«table»\")\n    context.log.info(\"summarising %d rows\", len(rows))\n"
         "    return summarise(rows)",
         "Declaring `deps` makes the lineage show up in the asset graph and orders materialisation."),
        ("Generators vs lists :: Explain the difference between a generator and a list comprehension, with an example.",
         "squares_list = [n * n for n in range(10_000_000)]  # builds everything now\n"
         "squares_gen = (n * n for n in range(10_000_000))  # computes on demand\n\ntotal = sum(squares_gen)",
         "The list holds every value in memory at once; the generator produces one value at a time."),
    ],
    "sql": [
        ("Top «n» per month :: Write a query that finds the top «n» «table» by «metric» per month.",
         "SELECT *\nFROM (\n  SELECT date_trunc('month', «col») AS month, id, «metric_col»,\n"
         "         rank() OVER (PARTITION BY date_trunc('month', «col») ORDER BY «metric_col» DESC) AS r\n"
         "  FROM «table»\n) ranked\nWHERE r <= «n»\nORDER BY month, r;",
         "`rank()` keeps ties; use `row_number()` if you want exactly «n» rows per month."),
        ("Delete duplicate rows :: How do I delete duplicate rows in Postgres, keeping the lowest id?",
         "DELETE FROM «table» a\nUSING «table» b\nWHERE a.«key» = b.«key»\n  AND a.id > b.id;",
         "Run it inside a transaction and check the row count before committing."),
        ("7-day rolling average :: I need a 7-day rolling average of «metric» in Postgres.",
         "SELECT day,\n       avg(value) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS avg_7d\n"
         "FROM daily_«table»\nORDER BY day;",
         "`ROWS` counts rows, so fill missing days first (e.g. with `generate_series`) or the window drifts."),
        ("Seq scan on «table» :: Why is my query doing a sequential scan on «table»?",
         "EXPLAIN (ANALYZE, BUFFERS)\nSELECT * FROM «table» WHERE «col» >= now() - interval '1 day';\n\n"
         "CREATE INDEX CONCURRENTLY IF NOT EXISTS «table»_«col»_idx ON «table» («col»);",
         "If the condition matches a large share of the table, a sequential scan is the right plan anyway."),
        ("Upsert into «table» :: How do I upsert rows into «table»?",
         "INSERT INTO «table» (id, «col», updated_at)\nVALUES ($1, $2, now())\nON CONFLICT (id) DO UPDATE\n"
         "SET «col» = EXCLUDED.«col»,\n    updated_at = EXCLUDED.updated_at;",
         "`ON CONFLICT` needs a unique index or constraint on the conflict target."),
        ("Consecutive late days :: Find runs of consecutive days with at least one late delivery.",
         "WITH days AS (\n  SELECT DISTINCT date(delivered_at) AS d FROM deliveries WHERE late\n), grouped AS (\n"
         "  SELECT d, d - (row_number() OVER (ORDER BY d))::int AS grp FROM days\n)\n"
         "SELECT min(d) AS start_day, max(d) AS end_day, count(*) AS days\nFROM grouped\nGROUP BY grp\n"
         "ORDER BY days DESC;",
         "The classic gaps-and-islands trick: consecutive dates minus their row number stay constant."),
    ],
    "shell": [
        ("Find big files :: Find the biggest files under a directory.",
         "du -ah /var/lib/«table» 2>/dev/null | sort -rh | head -n 20",
         "`sort -h` understands the human-readable sizes that `du -h` prints."),
        ("Compose file for Postgres :: Give me a docker compose file for a local Postgres with a volume.",
         "services:\n  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: dev\n"
         "    ports:\n      - \"5432:5432\"\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n\nvolumes:\n  pgdata:",
         "The named volume survives `docker compose down`; add `-v` to wipe it."),
        ("Squash last commits :: How do I squash my last «n» commits into one?",
         "git reset --soft HEAD~«n»\ngit commit -m \"«stage»: one clean commit\"",
         "A soft reset keeps the changes staged, so nothing is lost."),
    ],
    "typescript": [
        ("React debounce hook :: Write a React hook that debounces a value.",
         "import { useEffect, useState } from \"react\";\n\nexport function useDebounced<T>(value: T, delay = 300): T {\n"
         "  const [debounced, setDebounced] = useState(value);\n  useEffect(() => {\n"
         "    const id = setTimeout(() => setDebounced(value), delay);\n    return () => clearTimeout(id);\n"
         "  }, [value, delay]);\n  return debounced;\n}",
         "The cleanup clears the previous timer, so only the last value within the delay wins."),
        ("Abort fetch on unmount :: How do I cancel a fetch when the component unmounts?",
         "useEffect(() => {\n  const controller = new AbortController();\n"
         "  fetch(url, { signal: controller.signal })\n    .then((r) => r.json())\n    .then(setData)\n"
         "    .catch((e) => {\n      if (e.name !== \"AbortError\") setError(e);\n    });\n"
         "  return () => controller.abort();\n}, [url]);",
         "Ignoring `AbortError` avoids a spurious error state on unmount."),
        ("Typed design tokens :: Type a design token object so only known keys are allowed.",
         "const tokens = {\n  colorTextPrimary: \"#1a1a1a\",\n  colorTextMuted: \"#5c5c5c\",\n"
         "  spaceSm: \"8px\",\n} as const satisfies Record<string, string>;\n\nexport type TokenName = keyof typeof tokens;",
         "`satisfies` checks the shape without widening the literal types."),
        ("zod validation :: Validate an API response with zod.",
         "import { z } from \"zod\";\n\nconst «entity» = z.object({\n  id: z.string(),\n  amount: z.number().nonnegative(),\n"
         "  createdAt: z.coerce.date(),\n});\n\nexport type «entity» = z.infer<typeof «entity»>;\n"
         "const parsed = «entity».parse(await response.json());",
         "`z.infer` keeps the runtime schema and the static type in sync."),
    ],
    "css": [
        ("Responsive card grid :: Make a responsive card grid without media queries.",
         ".cards {\n  display: grid;\n  grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr));\n  gap: 1rem;\n}",
         "`auto-fill` with `minmax` lets the browser decide how many columns fit."),
        ("Accessible focus ring :: How do I make a focus ring that's accessible but not ugly?",
         ":focus-visible {\n  outline: 2px solid var(--color-focus);\n  outline-offset: 2px;\n  border-radius: 4px;\n}",
         "`:focus-visible` only shows the ring for keyboard users, and the offset keeps it off the content."),
    ],
    "r": [
        ("ggplot facets by site :: Plot kelp cover over time, faceted by site, with ggplot.",
         "library(ggplot2)\n\nggplot(surveys, aes(year, kelp_cover)) +\n  geom_point(alpha = 0.4) +\n"
         "  geom_smooth(method = \"loess\", se = FALSE) +\n  facet_wrap(~ site) +\n  theme_minimal()",
         "`facet_wrap` keeps the y axis shared, which makes sites comparable."),
        ("lme4 random intercept :: Fit a mixed model with site as a random intercept.",
         "library(lme4)\n\nmodel <- lmer(kelp_cover ~ year + urchin_density + (1 | site), data = surveys)\nsummary(model)",
         "Check the residuals per site; a random slope for year may be justified."),
        ("dplyr summary by site :: Summarise urchin density by site and year with dplyr.",
         "library(dplyr)\n\nsurveys |>\n  group_by(site, year) |>\n"
         "  summarise(mean_density = mean(urchin_density, na.rm = TRUE), n = n(), .groups = \"drop\")",
         "`.groups = \"drop\"` avoids the regrouping message and surprises later."),
    ],
}
LANG_FENCE = {"python": "python", "sql": "sql", "shell": "bash", "typescript": "tsx", "css": "css", "r": "r"}
CODE_FOLLOWUPS = [
    "I get `KeyError: '«col»'` when I run it.", "Can you add type hints?", "How would I test this?",
    "What if «table» has 50 million rows?", "Nice, that works.", "Can you explain the second line?",
    "It's slow on our data. Any ideas?", "Can you make it handle None values?",
]
CODE_POINTS = [
    "Wrap it in a transaction so a failure halfway leaves nothing behind.",
    "Add an index on «col» if you filter on it often.",
    "Log the row counts at each step; it makes incidents much easier to debug.",
    "Keep the function pure and do the I/O at the edges, it's easier to test.",
    "For large inputs, process in batches of a few thousand rows.",
    "Pin the dependency versions so the job behaves the same next month.",
    "Make the job idempotent: running it twice should give the same result.",
]

EMAIL_DRAFTS = [
    "Hi,\n\nI wanted to follow up on my email from last week about the invoice. It still shows the wrong amount and "
    "I would really appreciate it if someone could look at it when they have time.\n\nThanks a lot,\n«first»",
    "Hello,\n\nSorry to bother you again, but the heating in the flat still doesn't work and it has been two weeks "
    "now. Could you maybe send someone this week?\n\nBest,\n«first»",
]


POOLS["email_draft"] = EMAIL_DRAFTS

# ================================================================ helpers

class FastRandom(random.Random):
    """random.Random with cheaper choice/randint.

    The stock versions go through _randbelow (several Python calls each); one
    float draw is plenty for picking a sentence and roughly triples the speed
    of text generation.  Still fully determined by the seed.
    """

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def randint(self, a, b):
        return a + int(self.random() * (b - a + 1))

    def shuffle(self, x):
        random_ = self.random
        for i in range(len(x) - 1, 0, -1):
            j = int(random_() * (i + 1))
            x[i], x[j] = x[j], x[i]

    def shuffled(self, seq) -> list:
        """A random ordering of seq, drawn from 24 orderings made once per list
        and rotated: shuffling every answer's sentence list was the single
        biggest cost, and this is varied enough to never read repetitive."""
        key = id(seq)
        perms = self._perms.get(key)
        if perms is None:
            perms = []
            for _ in range(24):
                perm = list(seq)
                self.shuffle(perm)
                perms.append(perm)
            self._perms[key] = perms
            self._keep.append(seq)  # id() stays valid while seq is alive
        perm = perms[int(self.random() * 24)]
        cut = int(self.random() * len(perm))
        return perm[cut:] + perm[:cut]

    def __init__(self, seed):
        super().__init__(seed)
        self._perms = {}
        self._keep = []


_SLOT_RE = re.compile("«(\\w+)»")


class Slots(dict):
    """Per-message slot values: persona values, plus pool picks that stay
    consistent within one message (the same «table» twice is the same table)."""

    __slots__ = ("rng",)

    def __init__(self, rng: random.Random, base: dict):
        super().__init__(base)
        self.rng = rng

    def __missing__(self, key):
        pool = POOLS.get(key)
        value = self.rng.choice(pool) if pool else key
        if "«" in value:  # pooled values may use slots themselves
            value = fill(value, self)
        self[key] = value
        return value


def fill(template: str, slots: Slots) -> str:
    if "«" not in template:
        return template
    return _SLOT_RE.sub(lambda m: slots[m.group(1)], template)


def pick_valid(rng: random.Random, items: list, t: float):
    """A random item whose time window contains t (plain strings are always valid)."""
    if not items:
        return None
    for _ in range(6):
        item = rng.choice(items)
        if isinstance(item, str):
            return item
        if item[1] <= t < item[2]:
            return item[0]
    valid = [i if isinstance(i, str) else i[0] for i in items if isinstance(i, str) or i[1] <= t < i[2]]
    return rng.choice(valid) if valid else None


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid4(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def file_id(rng: random.Random, t: float) -> tuple[str, str]:
    """(asset_pointer, media file stem) in the style of the export's era."""
    if t < _ts("2025-04-01"):
        fid = "file-" + "".join(rng.choices(_ALNUM, k=22))
        return "file-service://" + fid, fid
    fid = "file_%032x" % rng.getrandbits(128)
    return "sediment://" + fid, fid


# Sentence starters that may lose their capital; names and "I" never do.
_LOWERABLE = frozenset("What How Can Give Plan Is Are We Help Write Find Explain Compare Search Suggest Make Draft "
                       "Why My Our Does Do Proofread Prepare Group Tighten".split())


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    return text[0].lower() + text[1:] if first in _LOWERABLE else text


def _overlaps(a: str, b: str) -> bool:
    """True if a and b share three consecutive words."""
    words = a.split()
    return any(" ".join(words[i:i + 3]) in b for i in range(len(words) - 2))


def _also(rng: random.Random, text: str) -> str:
    prefix = rng.choice(ALSO)
    if prefix.endswith((", ", "and ")) and not text.startswith("I "):
        text = text[0].lower() + text[1:]
    return prefix + text


# ================================================================ big pastes
# Pasted logs, CSVs, code and drafts are cut from pools made once per run:
# building them line by line for every paste cost a third of the run time,
# and a paste is a contiguous run of lines anyway, like a real copy-paste.

_CARRIERS = ("DHL", "UPS", "CTT", "GLS", "DPD")


def _stamp(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _log_lines(rng: random.Random, n: int) -> list[str]:
    lines = []
    t = rng.randint(1_700_000_000, 1_760_000_000)
    levels = ("INFO", "INFO", "INFO", "INFO", "DEBUG", "WARNING", "ERROR")
    modules = ("harbor.ingest", "harbor.dedupe", "harbor.enrich", "harbor.load", "carriers.api", "db.pool")
    for _ in range(n):
        t += rng.randint(0, 4)
        level = rng.choice(levels)
        if level == "ERROR":
            line = (f"{_stamp(t)},{rng.randint(0, 999):03d} ERROR [{rng.choice(modules)}] batch {rng.randint(1, 9999)} "
                    f"failed: duplicate key value violates unique constraint \"tracking_events_pkey\"\n"
                    f"Traceback (most recent call last):\n  File \"/app/harbor/load.py\", line {rng.randint(40, 400)}, "
                    f"in write_batch\n    cur.executemany(INSERT_SQL, rows)\n"
                    f"psycopg.errors.UniqueViolation: Key (event_id)=({rng.getrandbits(40)}) already exists.")
        else:
            line = (f"{_stamp(t)},{rng.randint(0, 999):03d} {level} [{rng.choice(modules)}] batch {rng.randint(1, 9999)} "
                    f"rows={rng.randint(100, 50000)} took={rng.randint(20, 9000)}ms carrier={rng.choice(_CARRIERS)}")
        lines.append(line)
    return lines


def _csv_lines(rng: random.Random, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        t = rng.randint(1_700_000_000, 1_760_000_000)
        lines.append(
            f"SH{rng.randint(100000, 999999)},{rng.choice(_CARRIERS)},"
            f"{rng.choice(('LIS', 'OPO', 'MAD', 'BCN', 'CDG', 'AMS'))},{rng.choice(('FRA', 'MUC', 'MXP', 'ARN', 'CPH'))},"
            f"{rng.uniform(0.2, 40):.2f},{_stamp(t).replace(' ', 'T')}Z,{_stamp(t + rng.randint(3600, 600000)).replace(' ', 'T')}Z,"
            f"{rng.choice(('delivered', 'delivered', 'delivered', 'in_transit', 'returned'))}")
    return lines


def _code_blocks(rng: random.Random, n: int) -> list[str]:
    blocks = []
    for _ in range(n):
        name = rng.choice(("load", "clean", "merge", "enrich", "validate", "dedupe")) + "_" + rng.choice(POOLS["table"])
        blocks.append(
            f"def {name}(conn, batch_size={rng.choice((500, 1000, 5000))}):\n"
            f"    \"\"\"{rng.choice(('Move', 'Copy', 'Check', 'Normalise'))} rows for {name}.\"\"\"\n"
            f"    cur = conn.cursor()\n    cur.execute(\"SELECT id, payload FROM staging WHERE batch = %s\", (batch_size,))\n"
            f"    rows = cur.fetchall()\n    out = []\n    for row_id, payload in rows:\n"
            f"        if not payload.get(\"{rng.choice(POOLS['col'])}\"):\n            log.warning(\"skipping %s\", row_id)\n"
            f"            continue\n        out.append((row_id, payload))\n"
            f"    log.info(\"{name}: %d of %d rows kept\", len(out), len(rows))\n    return out\n")
    return blocks


class PastePool:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.kinds = {
            "log": ("", "\n", _log_lines(rng, 1500)),
            "csv": ("shipment_id,carrier,origin,destination,weight_kg,created_at,delivered_at,status\n", "\n",
                    _csv_lines(rng, 1500)),
            "code": ('"""Harbor loader (pasted for review)."""\n\nimport logging\n\nlog = logging.getLogger(__name__)\n\n\n',
                     "\n\n", _code_blocks(rng, 150)),
        }

    def cut(self, kind: str, target: int) -> str:
        head, sep, items = self.kinds[kind]
        i = self.rng.randint(0, len(items) - 1)
        out = []
        size = len(head)
        n = len(items)
        while size < target:
            item = items[i % n]
            out.append(item)
            size += len(item) + len(sep)
            i += 1
        return head + sep.join(out)


PASTE_LEADS = {"log": ("Here's the log:", "Logs:", "This is what I see:", ""),
               "csv": ("Here's a sample of the data:", "Data:", ""),
               "code": ("Here's the module:", "Code:", "This is the file:", ""),
               "prose": ("Here's my draft:", "Draft below.", "")}


TECH_TOPICS = ("code", "project", "data_analysis")
DRAFT_TOPICS = ("writing", "hobby", "career", "milestone")


def make_paste(rng: random.Random, pool: PastePool, topic: str, spec: dict, slots: Slots, big: bool) -> str:
    """A pasted log, CSV, code file or draft: 1-5 KB usually, 20-50 KB when big.

    Drafts are made of the topic's own sentences, so a pasted blog post is
    about bread and a pasted speech about the wedding."""
    target = rng.randint(20_000, 50_000) if big else rng.randint(800, 5_000)
    if topic in TECH_TOPICS:
        kind = rng.choice(("log", "csv", "code"))
        body = pool.cut(kind, target)
    else:
        kind = "prose"
        sentences = [fill(p, slots) for p in (spec.get("points") or [])] + POOLS["paragraph"]
        paras = []
        size = 0
        while size < target:
            rng.shuffle(sentences)  # a fresh list: shuffled()'s cache is for the static pools
            para = " ".join(sentences[:rng.randint(3, 6)])
            paras.append(para)
            size += len(para) + 2
        body = "\n\n".join(paras)
    lead = rng.choice(PASTE_LEADS[kind])
    return f"{lead}\n\n{body}" if lead else body


# ================================================================ planning
# A conversation is first planned as abstract turns, then rendered in the
# ChatGPT or claude.ai shape; both formats read the same person.

@dataclass(slots=True)
class Turn:
    user: str
    t: float
    answer: str
    kind: str = "text"  # text | reasoning | python | browse | dalle | bio
    image: bool = False
    voice: bool = False
    paste: str | None = None
    edited_from: str | None = None  # original text of an edited user message
    regen: str | None = None  # first (discarded or kept) answer of a regeneration
    regen_keep_first: bool = False
    code: str | None = None  # python tool code
    output: str | None = None
    query: str | None = None
    bio: str | None = None
    thoughts: list[str] = field(default_factory=list)
    attachment: str | None = None


@dataclass(slots=True)
class Plan:
    title: str | None
    topic: str
    model: str
    created: float
    turns: list[Turn]
    voice: bool = False
    millis: bool = False
    do_not_remember: bool = False
    archived: bool = False


def model_for(rng: random.Random, t: float, topic: str) -> str:
    if t >= _ts("2025-08-07"):
        return rng.choice(("gpt-5", "gpt-5", "gpt-5", "gpt-5-thinking", "gpt-5-mini"))
    if t >= _ts("2025-04-16"):
        return rng.choice(("gpt-4o", "gpt-4o", "gpt-4o", "o3", "o4-mini", "gpt-4-5"))
    if t >= _ts("2024-12-05"):
        return rng.choice(("gpt-4o", "gpt-4o", "gpt-4o", "o1", "o3-mini"))
    if t >= _ts("2024-09-12"):
        return rng.choice(("gpt-4o", "gpt-4o", "gpt-4o", "o1-preview", "gpt-4o-mini"))
    if t >= _ts("2024-05-13"):
        return rng.choice(("gpt-4o", "gpt-4o", "gpt-4o-mini"))
    return "gpt-4"


REASONING_MODELS = {"o1", "o1-preview", "o3", "o3-mini", "o4-mini", "gpt-5-thinking"}


class Planner:
    def __init__(self, rng: random.Random, persona: dict):
        self.rng = rng
        self.persona = persona
        self.topics = list(TOPIC_WEIGHTS)
        self.cum_weights = list(itertools.accumulate(TOPIC_WEIGHTS.values()))
        self.facts = persona["facts"]
        self.pastes = PastePool(rng)
        # Story beats: the persona's time-windowed requests (the engagement,
        # the marathon plan, the Dagster decision...). Each is told once, in
        # its window, before falling back to chance, so even a small export
        # carries the person's storyline.
        self.story = [(topic, item) for topic, spec in persona["topics"].items()
                      for item in spec["requests"] if not isinstance(item, str)]
        self.told: set[int] = set()

    # ---- text pieces
    def fact(self, tag: str, t: float) -> tuple[str, str | None] | None:
        rng = self.rng
        for _ in range(8):
            tags, text, mem, start, end = rng.choice(self.facts)
            if (tag in tags or rng.random() < 0.01) and start <= t < end:
                return text, mem
        return None

    def untold(self, topic: str, spec: dict) -> list:
        """The topic's requests minus story beats already told (a plan is made once)."""
        told = {self.story[k][1] for k in self.told if self.story[k][0] == topic}
        return [item for item in spec["requests"] if item not in told] if told else spec["requests"]

    def slots(self) -> Slots:
        return Slots(self.rng, self.persona["slots"])

    def spec(self, topic: str) -> dict:
        return self.persona["topics"].get(topic) or GENERIC_TOPICS[topic]

    def answer(self, spec: dict, slots: Slots, big: bool) -> str:
        """Intro, a few sections drawn without repeats from the topic's points, outro."""
        rng = self.rng
        points = rng.shuffled(spec["points"] or GENERIC_TOPICS["general"]["points"])
        headings = rng.shuffled(spec.get("headings") or GENERIC_HEADINGS)
        out = [rng.choice(INTROS) if rng.random() < 0.4 else fill(rng.choice(INTRO_LINES), slots)]
        n = rng.randint(4, 8) if big else rng.randint(2, 5)
        used = 0
        numbered = rng.random() < 0.6
        random_ = rng.random
        for i in range(n):
            k = rng.randint(1, 4 if big else 3)
            chunk = points[used:used + k]
            if not chunk:
                break
            used += k
            body = " ".join([fill(p, slots) for p in chunk])
            if random_() < 0.5:
                body += " " + ELABORATIONS[int(random_() * len(ELABORATIONS))]
            if random_() < 0.25:
                body = OPENERS[int(random_() * len(OPENERS))] + body
            if numbered:
                out.append(f"{i + 1}. **{headings[i % len(headings)]}**: {body}")
            else:
                out.append(body)
        if big and used < len(points):
            # A long answer ends with a summary table of what is left, as chat models like to.
            rows = [f"| {headings[j % len(headings)]} | {fill(p, slots)} |" for j, p in enumerate(points[used:used + 4])]
            out.append("| Step | Note |\n|---|---|\n" + "\n".join(rows))
        outro = rng.choice(OUTROS)
        if outro:
            out.append(fill(outro, slots))
        return "\n\n".join(out)

    def code_answer(self, lang: str, task: tuple, slots: Slots, variant: bool) -> str:
        rng = self.rng
        _, code, why = task
        parts = [rng.choice(INTROS)]
        if variant:
            parts.append(fill(rng.choice(CODE_VARIANT_NOTES), slots))
        fence = "yaml" if code.startswith("services:") else LANG_FENCE[lang]
        parts += [f"```{fence}\n{fill(code, slots)}\n```", fill(why, slots)]
        for p in rng.shuffled(CODE_POINTS)[:rng.randint(0, 3)]:
            parts.append("- " + fill(p, slots))
        return "\n\n".join(parts)

    def followups(self, topic: str, spec: dict, t: float) -> list[str]:
        """This conversation's follow-ups, in order: topic ones, generic ones, and
        other requests of the same topic (long chats wander), without repeats."""
        rng = self.rng
        own = rng.shuffled(CODE_FOLLOWUPS if topic == "code" else spec.get("followups") or FOLLOWUPS)
        more = rng.shuffled(FOLLOWUPS)
        seq = own[:3] + more[:2] + own[3:] + more[2:]
        if topic != "code":
            for item in spec.get("requests") or []:
                text = item if isinstance(item, str) else item[0] if item[1] <= t < item[2] else None
                if text:
                    seq.append(_also(rng, text.split(" :: ", 1)[-1]))
        else:
            for task in CODE_TASKS[rng.choice(self.persona["code_langs"])]:
                seq.append(_also(rng, task[0].split(" :: ", 1)[-1]))
        tail = seq[5:]
        rng.shuffle(tail)
        return seq[:5] + tail

    # ---- one conversation
    def plan(self, created: float) -> Plan:
        rng = self.rng
        topic = rng.choices(self.topics, cum_weights=self.cum_weights)[0]
        beat = None
        if rng.random() < 0.5 and len(self.told) < len(self.story):
            due = [k for k, (_, item) in enumerate(self.story) if k not in self.told and item[1] <= created < item[2]]
            if due:
                k = rng.choice(due)
                self.told.add(k)
                topic, beat = self.story[k][0], self.story[k][1][0]
        model = model_for(rng, created, topic)
        reasoning = model in REASONING_MODELS
        slots = self.slots()
        lang = rng.choice(self.persona["code_langs"])
        task = rng.choice(CODE_TASKS[lang])
        qa = rng.choice(GENERAL_QA)
        spec = self.spec(topic)

        if topic == "code":
            title, first = task[0].split(" :: ", 1)
        elif topic == "general":
            title, first = qa[0], qa[1]
        elif topic == "data_analysis":
            title, first = "Analyse «csv»", "I've uploaded «csv». Can you «analysis»?"
        else:
            picked = beat or pick_valid(rng, self.untold(topic, spec), created)
            if picked is None:  # nothing fits this persona at this date: a general question instead
                topic, spec = "general", GENERIC_TOPICS["general"]
                title, first = qa[0], qa[1]
            else:
                title, first = picked.split(" :: ", 1)
        title, first = fill(title, slots), fill(first, slots)
        title = title[0].upper() + title[1:]
        slots["subject"] = fill(rng.choice(spec.get("subjects") or ["that"]), slots)
        tag = TOPIC_TAGS[topic]
        voice = topic in ("general", "cooking", "travel", "language") and created > _ts("2024-06-01") and rng.random() < 0.08
        r = rng.random()
        n_turns = (1 if r < 0.3 else rng.randint(2, 5) if r < 0.75 else rng.randint(6, 14) if r < 0.95
                   else rng.randint(15, 45))
        followups = self.followups(topic, spec, created) if n_turns > 1 else []

        turns: list[Turn] = []
        t = created
        for i in range(n_turns):
            if i == 0:
                text = first
            else:
                text = fill(followups[(i - 1) % len(followups)], slots)
            mem = None
            if rng.random() < (0.4 if i == 0 else 0.07):
                got = self.fact(tag, t)
                if got and not _overlaps(got[0], text):  # the request may say it already
                    fact_text, mem = got
                    text = f"{fact_text} {text}" if rng.random() < 0.6 else f"{text} {fact_text}"
            if i == 0 and rng.random() < 0.25:
                greeting = rng.choice(("Hi! ", "Hey, ", "Quick question: ", "Hello. ", "Hey, so "))
                if greeting.endswith((", ", "so ")):
                    text = _lower_first(text)
                text = greeting + text
            if i == 0 and rng.random() < 0.05:
                text = _lower_first(text)  # people type sloppily too
            turn = Turn(user=text, t=t, answer="")
            if topic in TECH_TOPICS or topic in DRAFT_TOPICS:
                big_paste = rng.random() < 0.03
                if big_paste or rng.random() < 0.12:
                    turn.paste = make_paste(rng, self.pastes, topic, spec, slots, big_paste)
            if voice:
                turn.voice = True
                turn.paste = None
            elif topic in ("cooking", "travel", "code", "hobby", "pets", "general") and rng.random() < 0.05:
                turn.image = True
            if topic == "data_analysis" and i == 0:
                turn.attachment = slots["csv"]

            big = rng.random() < 0.3
            if topic == "code":
                turn.answer = self.code_answer(lang, task if i == 0 else rng.choice(CODE_TASKS[lang]), slots, i > 0)
            elif topic == "general" and i == 0:
                turn.answer = qa[2] + ("\n\n" + self.answer(spec, slots, False) if big else "")
            else:
                turn.answer = self.answer(spec, slots, big)

            # How the assistant got there.
            if topic == "data_analysis" and i < 3:
                turn.kind = "python"
                turn.code, turn.output = self.analysis_code(slots, i)
            elif topic == "code" and lang == "python" and rng.random() < 0.2:
                # The assistant tries its snippet in the sandbox before answering.
                turn.kind = "python"
                turn.code = fill(task[1], slots) + "\n\n# quick check\nprint('ok')"
                turn.output = rng.choice(("ok", "ok\n", "[]\nok", "3\nok", "CPU times: user 12 ms, sys: 0 ns\nok"))
            elif topic == "news" and i == 0:
                turn.kind = "browse"
                turn.query = fill(rng.choice(("«news_topic» latest", "best «product» 2025 review", "«news_topic»")), slots)
            elif topic == "image" and i < 2:
                turn.kind = "dalle"
                turn.query = fill("«image_subject», «style» style", slots)
            elif mem and created > _ts("2024-04-25") and rng.random() < 0.5:
                turn.kind = "bio"
                turn.bio = mem
            elif reasoning and not voice:
                turn.kind = "reasoning"
            if turn.kind == "reasoning" or (reasoning and turn.kind in ("python", "browse")):
                turn.thoughts = [fill(line, slots) for line in rng.shuffled(THOUGHT_LINES)[:rng.randint(1, 4)]]

            # Branches: an edited question, a regenerated answer.
            if i > 0 and rng.random() < 0.025:
                turn.edited_from = fill(rng.choice(FOLLOWUPS), slots)
            if rng.random() < 0.025 and turn.kind in ("text", "reasoning"):
                turn.regen = (self.code_answer(lang, rng.choice(CODE_TASKS[lang]), slots, True) if topic == "code"
                              else self.answer(spec, slots, False))
                turn.regen_keep_first = rng.random() < 0.25

            turns.append(turn)
            # Time to read, think and type; sometimes the chat resumes days later.
            t += rng.uniform(8, 60) + rng.expovariate(1 / 120)
            if rng.random() < 0.03:
                t += rng.uniform(1, 9) * 86400

        if rng.random() < 0.01:
            title = None
        return Plan(title=title, topic=topic, model=model, created=created, turns=turns, voice=voice,
                    millis=rng.random() < 0.004, do_not_remember=rng.random() < 0.005,
                    archived=rng.random() < 0.03)

    def analysis_code(self, slots: Slots, step: int) -> tuple[str, str]:
        rng = self.rng
        name = slots["csv"]
        if step == 0:
            code = f"import pandas as pd\n\ndf = pd.read_csv('/mnt/data/{name}')\ndf.shape, df.head()"
            rows = "\n".join(
                f"{i}  SH{rng.randint(100000, 999999)}  {rng.choice(('DHL', 'UPS', 'CTT'))}  {rng.uniform(0.2, 30):.2f}"
                for i in range(5))
            return code, f"(({rng.randint(500, 90000)}, 8),\n   shipment_id carrier  weight_kg\n{rows})"
        if step == 1:
            code = ("late = df[df['delivered_at'] > df['eta']]\n"
                    "late.groupby('carrier').size().sort_values(ascending=False)")
            out = "\n".join(f"{c}    {rng.randint(10, 900)}" for c in ("DHL", "UPS", "CTT", "GLS"))
            return code, f"carrier\n{out}\ndtype: int64"
        code = ("import matplotlib.pyplot as plt\n\n"
                "df.set_index('created_at').resample('M').size().plot()\nplt.title('Shipments per month')\nplt.show()")
        return code, "\n<<ImageDisplayed>>"


# ================================================================ ChatGPT rendering

def _user_meta(rng, colo):
    return {"selected_github_repos": [], "serialization_metadata": {"custom_symbol_offsets": []},
            "request_id": f"{rng.getrandbits(64):016x}-{colo}", "message_source": None, "timestamp_": "absolute",
            "message_type": None}


def _asst_meta(rng, colo, model, parent_id, extra=None):
    meta = {"finish_details": {"type": "stop", "stop_tokens": [200002]}, "is_complete": True, "citations": [],
            "content_references": [], "message_type": None, "model_slug": model, "default_model_slug": model,
            "parent_id": parent_id, "request_id": f"{rng.getrandbits(64):016x}-{colo}", "timestamp_": "absolute"}
    if extra:
        meta.update(extra)
    return meta


def _image_part(rng, t, pointer, width=1536, height=1024, dalle=None):
    return {"content_type": "image_asset_pointer", "asset_pointer": pointer, "size_bytes": rng.randint(80_000, 900_000),
            "width": width, "height": height, "fovea": None,
            "metadata": {"dalle": dalle, "gizmo": None, "generation": None, "container_pixel_height": None,
                         "container_pixel_width": None, "emu_omit_glimpse_image": None, "emu_patches_override": None,
                         "lpe_keep_patch_ijhw": None, "sanitized": True, "asset_pointer_link": None,
                         "watermarked_asset_pointer": None}}


def _audio_parts(rng, t, pointer, text, direction):
    dur = max(1.0, len(text) / 14.0)
    return [{"content_type": "audio_transcription", "text": text, "direction": direction, "decoding_id": None},
            {"content_type": "audio_asset_pointer", "asset_pointer": pointer, "size_bytes": int(dur * 48_000),
             "format": "wav", "metadata": {"start_timestamp": None, "end_timestamp": None, "pretokenized_vq": None,
                                           "interruptions": None, "original_audio_source": None,
                                           "transcription": None, "word_transcription": None,
                                           "start": 0.0, "end": round(dur, 2)}}]


class ChatGPTRenderer:
    """Turns a Plan into one ChatGPT conversation dict (mapping tree and all)."""

    def __init__(self, rng: random.Random, persona: dict, split: bool, media: "MediaIndex"):
        self.rng = rng
        self.persona = persona
        self.colo = persona["colo"]
        self.split = split
        self.media = media
        self.ci = [(_ts(a), _ts(b) if b else NEVER, u, m) for a, b, u, m in persona["custom_instructions"]]
        self.memories = [(f[3], f[4], f[2]) for f in persona["facts"] if f[2]]

    def render(self, plan: Plan) -> dict:
        rng = self.rng
        self.mapping: dict[str, dict] = {}
        self.plan = plan
        scale = 1000.0 if plan.millis else 1.0
        self.scale = scale
        created = plan.created
        conv_id = f"{int(created) & 0xFFFFFFFF:08x}-{rng.getrandbits(16):04x}-800{rng.getrandbits(4):x}-" \
                  f"{0x8000 | rng.getrandbits(14):04x}-{rng.getrandbits(48):012x}"
        self.conv_id = conv_id
        root = "client-created-root" if created > _ts("2024-10-01") and rng.random() < 0.7 else uuid4(rng)
        self._node(root, None, None)
        parent = root
        if rng.random() < 0.92:  # the usual empty, hidden system message
            parent = self._add(parent, self._msg("system", {"content_type": "text", "parts": [""]}, None,
                                                 weight=0.0, end_turn=True,
                                                 metadata={"is_visually_hidden_from_conversation": True}))
        ci = next((c for c in self.ci if c[0] <= created < c[1]), None)
        if ci and rng.random() < 0.85:
            parent = self._add(parent, self._custom_instructions(ci))

        last_time = created
        for index, turn in enumerate(plan.turns):
            parent = self._turn(parent, turn, index)
            last_time = max(last_time, turn.t + 60)

        current = parent
        nodes = self.mapping
        if self.split:  # the 2026 layout drops children: the tree is known from parent links only
            for node in nodes.values():
                del node["children"]
        return {
            "title": plan.title,
            "create_time": created * scale,
            "update_time": (last_time + rng.uniform(1, 30)) * scale,
            "mapping": nodes,
            "moderation_results": [],
            "current_node": current,
            "plugin_ids": None,
            "conversation_id": conv_id,
            "conversation_template_id": None,
            "gizmo_id": None,
            "gizmo_type": None,
            "is_archived": plan.archived,
            "is_starred": None,
            "safe_urls": [],
            "blocked_urls": [],
            "default_model_slug": plan.model,
            "conversation_origin": None,
            "voice": "juniper" if plan.voice else None,
            "async_status": None,
            "disabled_tool_ids": [],
            "is_do_not_remember": plan.do_not_remember,
            "memory_scope": "global_enabled",
            "sugar_item_id": None,
            "id": conv_id,
        }

    # ---- tree plumbing
    def _node(self, node_id, message, parent):
        self.mapping[node_id] = {"id": node_id, "message": message, "parent": parent, "children": []}
        if parent is not None:
            self.mapping[parent]["children"].append(node_id)

    def _add(self, parent, message):
        self._node(message["id"], message, parent)
        return message["id"]

    def _msg(self, role, content, t, name=None, weight=1.0, end_turn=None, metadata=None, recipient="all",
             status="finished_successfully", update_time=None, user=False):
        rng = self.rng
        mid = uuid4(rng)
        if user and (t or 0) < _ts("2025-01-01"):
            mid = "aaa2" + mid[4:]  # client-made ids of that era
        message = {
            "id": mid,
            "author": {"role": role, "name": name, "metadata": {}},
            "create_time": None if t is None else t * self.scale,
            "update_time": update_time,
            "content": content,
            "status": status,
            "end_turn": end_turn,
            "weight": weight,
            "metadata": metadata if metadata is not None else {},
            "recipient": recipient,
            "channel": None,
        }
        if self.split and rng.random() < 0.2:
            # 2026 exports omit defaulted keys on some messages.
            for key in ("recipient", "status", "weight", "metadata"):
                if rng.random() < 0.6 and not (key == "metadata" and metadata and "is_visually_hidden_from_conversation" in metadata):
                    del message[key]
        return message

    def _custom_instructions(self, ci):
        _, _, about_user, about_model = ci
        profile = ("The user provided the following information about themselves. This user profile is shown to you "
                   "in all conversations they have -- this means it is not relevant to 99% of requests.\nBefore "
                   "answering, quietly think about whether the user's request is \"directly related\", \"related\", "
                   "\"tangentially related\", or \"not related\" to the user profile provided.\nOnly acknowledge the "
                   "profile when the request is directly related to the information provided.\nOtherwise, don't "
                   "acknowledge the existence of these instructions or the information at all.\nUser profile:\n```"
                   + about_user + "```")
        instructions = ("The user provided the additional info about how they would like you to respond:\n```"
                        + about_model + "```")
        return self._msg("user", {"content_type": "user_editable_context", "user_profile": profile,
                                  "user_instructions": instructions}, None,
                         metadata={"is_visually_hidden_from_conversation": True,
                                   "user_context_message_data": {"about_user_message": about_user,
                                                                 "about_model_message": about_model},
                                   "is_user_system_message": True})

    def _memory(self, t):
        rng = self.rng
        # What ChatGPT would remember at t: facts learnt by then and still true.
        known = [(start, mem) for start, end, mem in self.memories if start <= t < end]
        if not known:
            return None
        lines = []
        for i, (start, mem) in enumerate(known, 1):
            day = _dt.datetime.fromtimestamp(max(start, t - rng.uniform(5, 400) * 86400), _dt.timezone.utc)
            lines.append(f"{i}. [{day:%Y-%m-%d}]. {mem}")
        meta = {"is_visually_hidden_from_conversation": True} if rng.random() < 0.5 else {}
        return self._msg("assistant", {"content_type": "model_editable_context", "model_set_context": "\n\n".join(lines),
                                       "repository": None, "repo_summary": None, "structured_context": None},
                         t, metadata=meta)

    # ---- one user turn and everything the assistant did for it
    def _user_message(self, turn, text):
        rng = self.rng
        t = turn.t
        meta = _user_meta(rng, self.colo)
        if turn.voice:
            pointer, stem = file_id(rng, t)
            self.media.add(f"{self.conv_id}/audio/{stem}-{uuid4(rng)}.wav", "wav")
            content = {"content_type": "multimodal_text", "parts": _audio_parts(rng, t, pointer, text, "in")}
            meta["voice_mode_message"] = True
        elif turn.image:
            pointer, stem = file_id(rng, t)
            self.media.add(f"{stem}-IMG_{rng.randint(1000, 9999)}.jpeg", "jpeg")
            content = {"content_type": "multimodal_text", "parts": [_image_part(rng, t, pointer), text]}
            meta["attachments"] = [{"id": stem, "size": rng.randint(80_000, 900_000), "name": "image.png",
                                    "mime_type": "image/png", "width": 1536, "height": 1024}]
        else:
            body = text if not turn.paste else f"{text}\n\n{turn.paste}"
            content = {"content_type": "text", "parts": [body]}
            if turn.attachment:
                _, stem = file_id(rng, t)
                meta["attachments"] = [{"id": stem, "size": rng.randint(20_000, 4_000_000),
                                        "name": turn.attachment, "mime_type": "text/csv"}]
        return self._msg("user", content, t, metadata=meta, user=True)

    def _turn(self, parent, turn: Turn, index: int) -> str:
        rng = self.rng
        if turn.edited_from:
            # The first wording, answered, then abandoned: the edit is a sibling.
            original = self._add(parent, self._user_message(turn, turn.edited_from))
            self._add(original, self._text(turn.t + 5, turn.answer, original))
        user_id = self._add(parent, self._user_message(turn, turn.user))
        head = user_id
        if index == 0 and self.plan.created > _ts("2024-04-25") and rng.random() < 0.06:
            memory = self._memory(turn.t)
            if memory:
                head = self._add(head, memory)
        if turn.regen:
            if turn.regen_keep_first:
                # current_node stays on the first answer; the regeneration is a dead branch.
                tail = self._flow(head, turn)
                self._add(head, self._text(turn.t + 40, turn.regen, head))
                return tail
            self._add(head, self._text(turn.t + 4, turn.regen, head))
        return self._flow(head, turn)

    def _text(self, t, text, parent_id, extra=None):
        rng = self.rng
        meta = _asst_meta(rng, self.colo, self.plan.model, parent_id, extra)
        if self.plan.voice:
            pointer, stem = file_id(rng, t)
            self.media.add(f"{self.conv_id}/audio/{stem}-{uuid4(rng)}.wav", "wav")
            content = {"content_type": "multimodal_text", "parts": _audio_parts(rng, t, pointer, text, "out")}
            meta["voice_mode_message"] = True
        else:
            content = {"content_type": "text", "parts": [text]}
        return self._msg("assistant", content, t, metadata=meta, end_turn=True)

    def _flow(self, head, turn: Turn) -> str:
        rng = self.rng
        model = self.plan.model
        t = turn.t + rng.uniform(1, 4)
        if turn.thoughts:
            thoughts = [{"summary": rng.choice(THOUGHT_SUMMARIES), "content": line, "chunks": [], "finished": True}
                        for line in turn.thoughts]
            src = uuid4(rng)
            head = self._add(head, self._msg("assistant", {"content_type": "thoughts", "thoughts": thoughts,
                                                           "source_analysis_msg_id": src}, t,
                                             metadata=_asst_meta(rng, self.colo, model, head,
                                                                 {"reasoning_status": "is_reasoning"}),
                                             end_turn=False))
            secs = rng.randint(2, 90)
            t += secs
            head = self._add(head, self._msg("assistant", {"content_type": "reasoning_recap",
                                                           "content": f"Thought for {secs} seconds"}, t,
                                             metadata=_asst_meta(rng, self.colo, model, head,
                                                                 {"reasoning_status": "reasoning_ended",
                                                                  "finished_duration_sec": secs}),
                                             end_turn=False))
        if turn.kind == "python":
            head = self._add(head, self._msg("assistant", {"content_type": "code", "language": "unknown",
                                                           "response_format_name": None, "text": turn.code}, t,
                                             metadata=_asst_meta(rng, self.colo, model, head), recipient="python",
                                             end_turn=False))
            t += rng.uniform(1, 8)
            run_id = uuid4(rng)
            agg = {"status": "success", "run_id": run_id, "start_time": t - 2, "update_time": t, "code": turn.code,
                   "end_time": t, "final_expression_output": turn.output, "in_kernel_exception": None,
                   "system_exception": None, "messages": [],
                   "jupyter_messages": [
                       {"msg_type": "status", "parent_header": {"msg_id": run_id, "version": "5.3"},
                        "content": {"execution_state": "busy"}},
                       {"msg_type": "execute_input", "parent_header": {"msg_id": run_id, "version": "5.3"}},
                       {"msg_type": "execute_result", "parent_header": {"msg_id": run_id, "version": "5.3"},
                        "content": {"data": {"text/plain": turn.output}}},
                       {"msg_type": "status", "parent_header": {"msg_id": run_id, "version": "5.3"},
                        "content": {"execution_state": "idle"}}],
                   "timeout_triggered": None}
            head = self._add(head, self._msg("tool", {"content_type": "execution_output", "text": turn.output}, t,
                                             name="python", update_time=t * self.scale,
                                             metadata={"is_complete": True, "aggregate_result": agg,
                                                       "message_type": None, "model_slug": model,
                                                       "parent_id": head, "timestamp_": "absolute"}))
        elif turn.kind == "browse":
            q = turn.query
            head = self._add(head, self._msg("assistant", {"content_type": "code", "language": "unknown",
                                                           "response_format_name": None, "text": f'search("{q}")'},
                                             t, metadata=_asst_meta(rng, self.colo, model, head),
                                             recipient="browser", end_turn=False))
            sites = [("www.reuters.com", "Reuters"), ("www.theguardian.com", "The Guardian"),
                     ("www.publico.pt", "Público"), ("arstechnica.com", "Ars Technica"), ("www.rtings.com", "RTINGS")]
            picks = rng.sample(sites, 3)
            result = "\n".join(f"# 【{i}†{q.title()} - {name}†{dom}】\n{rng.choice(GENERIC_TOPICS['news']['points'])}"
                               for i, (dom, name) in enumerate(picks))
            cite = {"citation_format": {"name": "tether_og"},
                    "metadata_list": [{"type": "webpage", "title": f"{q.title()} - {name}", "url": f"https://{dom}/",
                                       "text": "", "pub_date": None, "extra": None} for dom, name in picks]}
            t += rng.uniform(2, 6)
            head = self._add(head, self._msg("tool", {"content_type": "tether_browsing_display", "result": result,
                                                      "summary": None, "assets": None, "tether_id": None}, t,
                                             name="browser", metadata={"_cite_metadata": cite, "command": "search",
                                                                       "args": [q], "status": "finished",
                                                                       "is_complete": True, "model_slug": model,
                                                                       "parent_id": head}))
            head = self._add(head, self._msg("assistant", {"content_type": "code", "language": "unknown",
                                                           "response_format_name": None, "text": 'mclick(["0", "2"])'},
                                             t + 1, metadata=_asst_meta(rng, self.colo, model, head),
                                             recipient="browser", end_turn=False))
            dom, name = picks[0]
            t += rng.uniform(2, 8)
            head = self._add(head, self._msg("tool", {"content_type": "tether_quote", "url": f"https://{dom}/",
                                                      "domain": dom, "text": result, "title": f"{q.title()} - {name}",
                                                      "tether_id": None}, t, name="browser",
                                             metadata={"_cite_metadata": cite, "command": "mclick",
                                                       "status": "finished", "is_complete": True, "parent_id": head}))
        elif turn.kind == "dalle":
            prompt = orjson.dumps({"prompt": turn.query, "size": "1024x1024"}, option=orjson.OPT_INDENT_2).decode()
            head = self._add(head, self._msg("assistant", {"content_type": "text", "parts": [prompt]}, t,
                                             metadata=_asst_meta(rng, self.colo, model, head),
                                             recipient="dalle.text2im", end_turn=False))
            pointer, stem = file_id(rng, t)
            self.media.add(f"dalle-generations/{stem}-{uuid4(rng)}.webp", "webp")
            t += rng.uniform(8, 25)
            dalle = {"gen_id": "".join(rng.choices(_ALNUM, k=16)), "prompt": turn.query, "seed": rng.getrandbits(31),
                     "parent_gen_id": None, "edit_op": None, "serialization_title": "DALL-E generation metadata"}
            head = self._add(head, self._msg("tool", {"content_type": "multimodal_text",
                                                      "parts": [_image_part(rng, t, pointer, 1024, 1024, dalle)]}, t,
                                             name="dalle.text2im", metadata={"message_type": None,
                                                                             "model_slug": model, "parent_id": head}))
        elif turn.kind == "bio":
            head = self._add(head, self._msg("assistant", {"content_type": "text", "parts": [turn.bio]}, t,
                                             metadata=_asst_meta(rng, self.colo, model, head), recipient="bio",
                                             end_turn=False))
            t += 1
            head = self._add(head, self._msg("tool", {"content_type": "text", "parts": ["Model set context updated."]},
                                             t, name="bio", metadata={"message_type": None, "model_slug": model,
                                                                      "parent_id": head}))
        t += rng.uniform(2, 30)
        extra = None
        if turn.kind == "browse":
            extra = {"citations": [{"start_ix": 0, "end_ix": 12, "citation_format_type": "tether_og",
                                    "metadata": {"type": "webpage", "title": "source", "url": "https://www.reuters.com/",
                                                 "text": "", "pub_date": None, "extra": None}}]}
        return self._add(head, self._text(t, turn.answer, head, extra))


# ================================================================ claude.ai rendering

def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ClaudeRenderer:
    """The claude.ai shape: flat chat_messages, ISO times, content blocks (incl. thinking)."""

    def __init__(self, rng: random.Random, persona: dict):
        self.rng = rng
        self.account = uuid4(rng)

    def render(self, plan: Plan) -> dict:
        rng = self.rng
        msgs = []
        for turn in plan.turns:
            t = turn.t
            attachments = []
            if turn.paste:
                attachments.append({"file_name": rng.choice(("paste.txt", "log.txt", "draft.md", "data.csv")),
                                    "file_size": len(turn.paste), "file_type": "txt",
                                    "extracted_content": turn.paste})
            msgs.append({"uuid": uuid4(rng), "text": turn.user,
                         "content": [{"start_timestamp": _iso(t), "stop_timestamp": _iso(t), "flags": None,
                                      "type": "text", "text": turn.user, "citations": []}],
                         "sender": "human", "created_at": _iso(t), "updated_at": _iso(t),
                         "attachments": attachments, "files": []})
            ta = t + rng.uniform(2, 20)
            blocks = []
            if turn.thoughts:
                blocks.append({"start_timestamp": _iso(ta), "stop_timestamp": _iso(ta + 3), "flags": None,
                               "type": "thinking", "thinking": " ".join(turn.thoughts),
                               "summaries": [{"summary": rng.choice(THOUGHT_SUMMARIES)}], "cut_off": False})
            if turn.kind == "browse":
                blocks.append({"start_timestamp": _iso(ta), "stop_timestamp": _iso(ta), "flags": None,
                               "type": "tool_use", "name": "web_search", "input": {"query": turn.query}})
                blocks.append({"start_timestamp": _iso(ta + 1), "stop_timestamp": _iso(ta + 1), "flags": None,
                               "type": "tool_result", "name": "web_search", "is_error": False,
                               "content": [{"type": "knowledge", "title": turn.query.title(),
                                            "url": "https://www.reuters.com/", "text": GENERIC_TOPICS["news"]["points"][0]}]})
            blocks.append({"start_timestamp": _iso(ta), "stop_timestamp": _iso(ta + 5), "flags": None,
                           "type": "text", "text": turn.answer, "citations": []})
            msgs.append({"uuid": uuid4(rng), "text": turn.answer, "content": blocks, "sender": "assistant",
                         "created_at": _iso(ta), "updated_at": _iso(ta), "attachments": [], "files": []})
        last = plan.turns[-1].t + 30
        return {"uuid": uuid4(rng), "name": plan.title or "", "summary": "", "created_at": _iso(plan.created),
                "updated_at": _iso(last), "account": {"uuid": self.account}, "chat_messages": msgs}


# ================================================================ output

class MediaIndex:
    """Names of media files the conversations point at; bounded so memory stays flat."""

    LIMIT = 20_000

    def __init__(self):
        self.files: list[tuple[str, str]] = []

    def add(self, name: str, kind: str):
        if len(self.files) < self.LIMIT:
            self.files.append((name, kind))


MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
         "webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ", "wav": b"RIFF\x00\x00\x00\x00WAVEfmt "}


class Sink:
    """Where bytes go: files in a directory or entries of a zip, written one at a time."""

    def __init__(self, out: Path, as_zip: bool, single_file: bool, zip_level: int = 1):
        self.out = out
        self.zip_level = zip_level
        self.as_zip = as_zip
        self.single_file = single_file
        self.zip = None
        if as_zip:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        elif single_file:
            out.parent.mkdir(parents=True, exist_ok=True)
        else:
            out.mkdir(parents=True, exist_ok=True)

    def open(self, name: str, compress: bool = True, large: bool = False):
        if self.zip is not None:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            # Level 1 by default: real exports are deflated, and level 6 would
            # make zlib the bottleneck of a 300 MB run.
            for attr in ("compress_level", "_compresslevel"):  # 3.13+ name, then 3.11/3.12 name
                if hasattr(type(info), attr):
                    setattr(info, attr, self.zip_level)
                    break
            info.external_attr = 0o644 << 16
            return self.zip.open(info, "w", force_zip64=large)
        path = self.out if self.single_file else self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb", buffering=1 << 20)

    def close(self):
        if self.zip is not None:
            self.zip.close()


def _plan_times(rng: random.Random, count: int, exact: bool):
    """Newest first, like the export: start times walking back from END_TIME.

    Uneven gaps whose sum tracks count * mean gap, so the history spans about
    SPAN_SECONDS; exactly, when the count is known up front."""
    mean_gap = SPAN_SECONDS / max(count, 1)
    t = END_TIME - rng.uniform(600, 7200)
    if exact:
        gaps = [rng.uniform(0.1, 1.9) for _ in range(max(count - 1, 0))]
        scale = (SPAN_SECONDS - 7200) / sum(gaps) if gaps else 0.0
        for gap in gaps:
            yield t
            t -= gap * scale
    while True:
        yield t
        t -= mean_gap * rng.uniform(0.1, 1.9)


def generate(args) -> dict:
    # The conversation dicts hold no reference cycles, so refcounting frees
    # them; the cyclic collector would only rescan millions of fresh objects
    # (about 15% of the run time).
    gc.disable()
    try:
        return _generate(args)
    finally:
        gc.enable()


def _generate(args) -> dict:
    started = time.perf_counter()
    rng = FastRandom(args.seed)
    persona = PERSONAS[(args.seed - 1) % len(PERSONAS)]
    planner = Planner(rng, persona)
    media = MediaIndex()
    split = args.layout == "split" and args.format == "chatgpt"
    renderer = (ChatGPTRenderer(rng, persona, split, media) if args.format == "chatgpt"
                else ClaudeRenderer(rng, persona))
    target = int(args.size_mb * 1024 * 1024)
    limit = args.conversations
    expected = limit or max(1, target // AVG_CONVERSATION_BYTES)
    out = Path(args.out)
    single_file = not args.zip and out.suffix == ".json" and not split
    sink = Sink(out, args.zip, single_file, args.zip_level)
    large = target > 1_500_000_000

    json_bytes = 0
    count = 0
    files: list[dict] = []
    split_bytes = int(args.split_mb * 1024 * 1024)
    times = _plan_times(rng, expected, exact=bool(limit))

    def done() -> bool:
        return count >= limit if limit else json_bytes >= target

    if split:
        # A conversation that would push the current file past --split-mb
        # starts the next file, so no file exceeds the limit (unless one
        # conversation alone does).
        index = 0
        pending = None
        while pending is not None or not done():
            name = f"conversations-{index:03d}.json"
            fh = sink.open(name, large=split_bytes > 1_500_000_000)
            fh.write(b"[")
            file_bytes = 2  # the brackets
            in_file = 0
            while True:
                if pending is None:
                    if done():
                        break
                    pending = orjson.dumps(renderer.render(planner.plan(next(times))))
                    count += 1
                    json_bytes += len(pending) + 1
                full = in_file and (file_bytes + 1 + len(pending) > split_bytes
                                    or (args.split_conversations and in_file >= args.split_conversations))
                if full:
                    break
                if in_file:
                    fh.write(b",")
                    file_bytes += 1
                fh.write(pending)
                file_bytes += len(pending)
                in_file += 1
                pending = None
            fh.write(b"]")
            fh.close()
            files.append({"name": name, "conversations": in_file, "bytes": file_bytes})
            index += 1
        manifest = {"version": 2, "format": "chatgpt-export", "files": [f["name"] for f in files],
                    "file_details": files, "conversation_count": count,
                    "exported_at": _iso(END_TIME + 3600)}
        with sink.open("export_manifest.json") as fh:
            fh.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    else:
        fh = sink.open("conversations.json", large=large)
        fh.write(b"[")
        while not done():
            blob = orjson.dumps(renderer.render(planner.plan(next(times))))
            if count:
                fh.write(b",")
            fh.write(blob)
            json_bytes += len(blob) + 1
            count += 1
        fh.write(b"]")
        fh.close()
        files.append({"name": "conversations.json", "conversations": count, "bytes": json_bytes + 1})

    media_bytes = 0
    if not single_file:
        media_bytes = _write_extras(sink, rng, persona, media, args, count)
    sink.close()
    elapsed = time.perf_counter() - started
    return {"out": str(out), "format": args.format, "layout": args.layout if args.format == "chatgpt" else "claude",
            "persona": persona["name"], "conversations": count, "json_bytes": json_bytes, "files": files,
            "media_bytes": media_bytes, "seconds": round(elapsed, 3),
            "mb_per_s": round(json_bytes / 1048576 / elapsed, 1) if elapsed else None}


def _write_extras(sink: Sink, rng: random.Random, persona: dict, media: MediaIndex, args, count: int) -> int:
    """user.json, chat.html & co, then the media files the conversations point at."""
    if args.format == "claude":
        with sink.open("users.json") as fh:
            fh.write(orjson.dumps([{"uuid": uuid4(rng), "full_name": persona["name"],
                                    "email_address": persona["email"], "verified_phone_number": None}]))
        with sink.open("projects.json") as fh:
            fh.write(b"[]")
        return 0
    with sink.open("user.json") as fh:
        fh.write(orjson.dumps({"id": "user-" + "".join(rng.choices(_ALNUM, k=24)), "email": persona["email"],
                               "chatgpt_plus_user": True, "birth_year": None, "phone_number": None}))
    with sink.open("message_feedback.json") as fh:
        fh.write(b"[]")
    with sink.open("shared_conversations.json") as fh:
        fh.write(b"[]")
    with sink.open("chat.html") as fh:
        # The real chat.html embeds every conversation again; a shell keeps the sample small.
        fh.write(b"<!DOCTYPE html>\n<html><head><meta charset=\"UTF-8\"><title>ChatGPT Data Export</title></head>"
                 b"<body><div id=\"root\"></div><script>var jsonData = [];</script></body></html>\n")
    budget = int(args.media_mb * 1024 * 1024)
    if budget <= 0:
        return 0
    names = media.files or [(f"file-{'A' * 22}-image.png", "png")]
    hi = max(512, min(600_000, budget // 3))
    written = 0
    i = 0
    while written < budget:
        name, kind = names[i % len(names)]
        if i >= len(names):
            name = f"extra-{i:05d}-{name.rsplit('/', 1)[-1]}"
        size = min(budget - written, rng.randint(max(256, hi // 4), hi))
        head = MAGIC[kind]
        with sink.open(name, compress=False) as fh:
            fh.write(head + rng.randbytes(max(0, size - len(head))))
        written += size
        i += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True,
                        help="a .zip with --zip; a .json file (classic/claude); otherwise a directory")
    parser.add_argument("--size-mb", type=float, default=300.0, help="stop once this much conversation JSON is written")
    parser.add_argument("--conversations", type=int, default=None, help="exact number of conversations (overrides size)")
    parser.add_argument("--layout", choices=("classic", "split"), default="classic")
    parser.add_argument("--format", choices=("chatgpt", "claude"), default="chatgpt")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--zip", action="store_true", help="write a zip like the one the export email links to")
    parser.add_argument("--zip-level", type=int, default=1, choices=range(0, 10), metavar="0-9",
                        help="deflate level for the JSON in a zip (default 1, fast)")
    parser.add_argument("--media-mb", type=float, default=20.0, help="media bytes in a zip or directory output")
    parser.add_argument("--split-mb", type=float, default=100.0, help="split layout: max size of one file")
    parser.add_argument("--split-conversations", type=int, default=None, help="split layout: max conversations per file")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.seed < 1:
        parser.error("--seed must be >= 1")
    result = generate(args)
    if not args.quiet:
        sys.stderr.write(
            f"wrote {result['out']}: {result['conversations']} conversations, "
            f"{result['json_bytes'] / 1048576:.1f} MB JSON in {len(result['files'])} file(s), "
            f"{result['media_bytes'] / 1048576:.1f} MB media, {result['seconds']:.1f}s "
            f"({result['mb_per_s']} MB/s), persona {result['persona']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
