"""Tests for saga_model.labels: label rules, characters, user choices, prefixes, name swaps."""

from __future__ import annotations

import random
import re

import pytest

from saga_model.labels import (
    CONTROL_TOKENS,
    END_OF_STORY,
    GENRES,
    NAME_POOL,
    PET_NAMES,
    STORY_START,
    THEMES,
    TONES,
    StoryLabels,
    control_prefix,
    derive_labels,
    drop_fields,
    find_characters,
    label_scores,
    mentions,
    parse_characters,
    swap_names,
    validate_choice,
)

# ---------------------------------------------------------------------------------------------
# Short representative stories (written for these tests, in the TinyStories style)
# ---------------------------------------------------------------------------------------------

THEME_STORIES = {
    "adventure": (
        "Once upon a time, a boy named Tim found an old map. He wanted to go on an adventure. "
        "He packed a bag and set off on a long journey across the sea to a far island. "
        "He explored a dark cave and discovered a treasure chest. It was the best adventure "
        "ever, and Tim could not wait to explore more new places."
    ),
    "friendship": (
        "Lily was lonely at the new park. She had no friends. Then she met a girl named Sue. "
        "They played on the swings and became friends. Every day they met and played "
        "together. Lily said, \"You are my best friend!\" Sue said, \"You are my best friend "
        "too!\" Their friendship made them both very happy."
    ),
    "kindness": (
        "Ben saw an old man who was hungry and cold. Ben was a kind boy. He gave the man his "
        "warm coat and half of his bread. The man said, \"Thank you, you are very kind.\" "
        "Ben felt good. His kindness made the man feel better. Ben learned that being kind "
        "and helpful is a good deed that makes everyone happy."
    ),
    "courage": (
        "Mia was afraid of the dark. One night she heard a noise. She was scared, but she "
        "took a deep breath and said, \"I will be brave.\" She walked to the door with "
        "courage. It was only her cat. Mia smiled. She was not scared anymore. She learned "
        "that being brave means facing your fear."
    ),
    "sharing": (
        "Tom had a big box of crayons. Sam had none. Sam asked, \"Can I use some?\" Tom said, "
        "\"No, they are mine!\" Sam was sad. Mom said, \"It is nice to share.\" Tom thought "
        "about it and shared his crayons. They took turns with the red one. Sharing was "
        "more fun than keeping everything for himself."
    ),
    "family": (
        "Anna loved her family. Every Sunday her mom, her dad, her little brother and her "
        "grandma and grandpa ate lunch together. Her big sister told funny stories. After "
        "lunch the whole family went for a walk. Anna hugged her parents and said, \"I love "
        "our family.\""
    ),
    "nature": (
        "Sara planted a small seed in the garden. Every day she gave it water. The sun shone "
        "and the rain fell. Soon a green plant grew out of the soil. Then it had leaves and "
        "a big yellow flower. Bees and butterflies came to the flower. Sara loved the trees, "
        "the grass and all of nature."
    ),
    "magic": (
        "Jack found a magic wand under a tree. When he waved it, sparkles flew out. A fairy "
        "appeared and said, \"That wand is magical. You can make one wish.\" Jack wished for "
        "a flying bike. With a poof, the bike appeared. Jack laughed at the magic spell."
    ),
    "honesty": (
        "Amy broke her mom's blue vase. She was afraid, so she hid the pieces and lied. She "
        "said the cat did it. But Amy felt bad. It is wrong to lie. She went to her mom and "
        "told the truth. \"I am sorry, it was me,\" she said. Mom hugged her and said, "
        "\"Thank you for being honest.\""
    ),
    "learning": (
        "Max went to school for the first time. His teacher showed the class the letters of "
        "the alphabet. Max wanted to learn how to read. He practiced every day with his "
        "books. He counted numbers and wrote new words. Soon Max could read a whole book. "
        "He was proud of what he learned at school."
    ),
}

TONE_STORIES = {
    "cheerful": (
        "It was a sunny day. Lily smiled and sang a happy song. She danced in the garden "
        "with her friends. They had so much fun! Everyone was glad and full of joy. They "
        "clapped and cheered. It was the best day ever, and they smiled all the way home."
    ),
    "calm": (
        "The moon was up and the night was quiet. Tom lay in his cozy bed under a soft "
        "blanket. Mom sang a gentle lullaby. The breeze was calm and peaceful. Tom yawned. "
        "He was tired. He closed his eyes slowly and fell asleep. He dreamed of soft clouds."
    ),
    "sad": (
        "Sue lost her favorite teddy bear. She looked everywhere, but it was gone. She "
        "cried and cried. Tears ran down her face. She was very sad and felt alone. Her old "
        "dog had died last year too. Sue missed them both. She sat by the window, unhappy "
        "and sad."
    ),
    "funny": (
        "Ben put a silly hat on his dog. The dog made a funny face and sneezed. Ben laughed "
        "and giggled. Then the dog tickled Ben with his tail. Ben told a joke and his sister "
        "laughed so hard. They were so silly all day and giggled until dinner."
    ),
    "exciting": (
        "The race was about to start! Mia ran as fast as she could! Faster and faster! The "
        "other kids were chasing her! Suddenly she zoomed past the big tree! She was so "
        "excited! It was the most exciting race ever! She won! Wow!"
    ),
    "scary": (
        "It was a dark and stormy night. Thunder boomed and lightning flashed. Tim heard a "
        "growl behind the door. A big shadow moved on the wall. He was scared and "
        "trembled. Was it a monster? Was it a ghost? He screamed. It was a terrible, scary "
        "night."
    ),
}

GENRE_STORIES = {
    "fantasy": (
        "Once upon a time, in a faraway kingdom, there lived a princess in a big castle. "
        "One day a dragon flew over the castle. The king and queen were afraid. A brave "
        "knight rode to the dragon. The dragon was friendly and gave the princess a golden "
        "crown."
    ),
    "animal fable": (
        "Once upon a time, a little rabbit and a slow turtle lived in the forest. The rabbit "
        "laughed at the turtle. \"You are too slow,\" said the rabbit. The turtle said, "
        "\"Let us race.\" The rabbit ran fast and then took a nap under a tree. The turtle "
        "kept walking and won. The rabbit learned a lesson: slow and steady wins the race."
    ),
    "everyday life": (
        "Lily woke up and ate breakfast in the kitchen with her mom and dad. Then she went to "
        "school on the bus. After school she played on the swings at the park with her ball. "
        "At home she took a bath, ate dinner and went to her room to play with her toys."
    ),
    "mystery": (
        "One morning, Tom found that his red ball was missing. It was a mystery! He looked "
        "for clues. He found strange footprints near the door. \"Who took my ball?\" he "
        "wondered. He followed the footprints and searched the garden. He wanted to solve "
        "the mystery and find out where the ball had gone."
    ),
    "sci-fi": (
        "Max built a robot out of metal and wires. The robot could beep and talk. One day "
        "they climbed into a rocket and flew into space. They saw the moon and a red planet. "
        "An alien waved at them from a spaceship. Max and the robot waved back."
    ),
}


@pytest.mark.parametrize(("field", "stories"), [
    ("theme", THEME_STORIES), ("tone", TONE_STORIES), ("genre", GENRE_STORIES),
])
def test_every_value_has_a_representative_story(field: str, stories: dict[str, str]) -> None:
    values = {"theme": THEMES, "tone": TONES, "genre": GENRES}[field]
    assert set(stories) == set(values)


@pytest.mark.parametrize(("value", "story"), THEME_STORIES.items())
def test_theme_detected(value: str, story: str) -> None:
    assert derive_labels(story).theme == value, label_scores(story, "theme")
    assert mentions(story, "theme", value)


@pytest.mark.parametrize(("value", "story"), TONE_STORIES.items())
def test_tone_detected(value: str, story: str) -> None:
    assert derive_labels(story).tone == value, label_scores(story, "tone")
    assert mentions(story, "tone", value)


@pytest.mark.parametrize(("value", "story"), GENRE_STORIES.items())
def test_genre_detected(value: str, story: str) -> None:
    assert derive_labels(story).genre == value, label_scores(story, "genre")
    assert mentions(story, "genre", value)


def test_required_values_present() -> None:
    for value in ("adventure", "friendship", "kindness", "courage", "sharing", "family",
                  "nature", "magic"):
        assert value in THEMES
    for value in ("cheerful", "calm", "sad", "funny", "exciting"):
        assert value in TONES
    for value in ("fantasy", "animal fable", "everyday life", "mystery", "sci-fi"):
        assert value in GENRES
    for values in (THEMES, TONES, GENRES):
        assert all(v == v.lower() and "_" not in v for v in values)
        assert len(set(values)) == len(values)


def test_no_signal_gives_none() -> None:
    labels = derive_labels("The end.")
    assert labels == StoryLabels()
    assert derive_labels("") == StoryLabels()


def test_derive_labels_is_deterministic() -> None:
    story = THEME_STORIES["magic"] + "\n" + TONE_STORIES["funny"]
    first = derive_labels(story)
    assert all(derive_labels(story) == first for _ in range(5))
    assert isinstance(first, StoryLabels)
    assert first.characters == ("Jack", "Ben")


def test_label_scores_shape_and_errors() -> None:
    for field, values in (("theme", THEMES), ("tone", TONES), ("genre", GENRES)):
        scores = label_scores(THEME_STORIES["magic"], field)
        assert tuple(scores) == values
        assert all(isinstance(x, float) and x >= 0 for x in scores.values())
    assert label_scores("", "theme") == dict.fromkeys(THEMES, 0.0)
    with pytest.raises(ValueError, match="unknown label field"):
        label_scores("a story", "mood")


def test_cheerful_does_not_swamp_other_tones() -> None:
    # Almost every story is "happy"; a sad story with a happy ending must stay sad.
    story = TONE_STORIES["sad"] + " In the end, she smiled. She was happy and glad again."
    assert derive_labels(story).tone == "sad"


def test_mentions() -> None:
    assert mentions("The wizard waved his wand.", "theme", "magic")
    assert not mentions("Tom ate an apple.", "theme", "magic")
    assert mentions("A rocket flew to the moon.", "genre", "Sci-Fi")
    assert mentions("A rocket flew to the moon.", "genre", "sci_fi")
    assert not mentions("Tom ate an apple.", "genre", "sci-fi")
    assert mentions("She cried and cried.", "tone", "sad")
    assert mentions("Lily's dog ran.", "characters", "Lily")
    assert not mentions("Lilyanne ran.", "characters", "Lily")
    with pytest.raises(ValueError):
        mentions("x", "theme", "pirates")


def test_keywords_match_whole_words_only() -> None:
    # "wand" must not match "wandered", "hug" not "huge", "rock" not "rocket"...
    assert label_scores("He wandered and wandered.", "theme")["magic"] == 0
    assert label_scores("A huge huge hill.", "theme")["family"] == 0
    assert not mentions("They hoped and hoped.", "genre", "animal fable")
    # ... but inflections listed with a wildcard do match, and possessives count.
    assert mentions("The dragon's cave. Dragons!", "genre", "fantasy")
    assert label_scores("giggled giggling", "tone")["funny"] > 0


# ---------------------------------------------------------------------------------------------
# Characters
# ---------------------------------------------------------------------------------------------


def test_find_characters_named_and_called() -> None:
    story = (
        "Once upon a time, there was a girl named Lily. She had a dog named Spot and a "
        "bird called Bobo. Lily and Spot played in the park."
    )
    assert find_characters(story) == ("Lily", "Spot", "Bobo")


def test_find_characters_order_of_first_appearance_and_possessive() -> None:
    story = (
        "Tom's kite was red. One day, Tom went out with Sue. \"Hi Tom!\" said Max. "
        "Sue's hat flew away and Max ran after it."
    )
    assert find_characters(story) == ("Tom", "Sue", "Max")


def test_find_characters_excludes_common_capitalised_words() -> None:
    story = (
        "Once upon a time, there was a boy named Ben. One day, Mom said, \"Ben, come here!\" "
        "The sun was up. Daddy and Grandma waited. Mr. Brown and Mrs. Green waved. "
        "I like Monday and Christmas, said Ben. Blue birds flew. Red leaves fell. "
        "Little Ben thanked God. Miss Sue smiled. The End."
    )
    assert find_characters(story) == ("Ben",)


def test_find_characters_adjective_names_only_when_introduced() -> None:
    assert find_characters("Blue birds sang. Tim saw them.") == ("Tim",)
    assert find_characters("Tim had a bird named Blue. Blue could sing.") == ("Tim", "Blue")


def test_find_characters_signs_and_contractions() -> None:
    story = (
        "Lily saw a sign that said \"No Dogs Allowed\". Don't go, said Lily. "
        "I'm sad, she said. Let's go home."
    )
    assert find_characters(story) == ("Lily",)


def test_find_characters_sentence_initial_known_names() -> None:
    # Names that only ever start sentences are accepted when they are well-known names.
    assert find_characters("Tim ran. Sara ran too. They were fast.") == ("Tim", "Sara")
    # ... but not when the word also appears in lower case (it is a common word then).
    assert find_characters("Rose petals fell. A rose is red.") == ()


def test_find_characters_at_most_four() -> None:
    story = "Tim met Ann, Bob, Sue, Max and Zoe at the park with Lily."
    found = find_characters(story)
    assert found == ("Tim", "Ann", "Bob", "Sue")
    assert find_characters("") == ()


# ---------------------------------------------------------------------------------------------
# User choices
# ---------------------------------------------------------------------------------------------


def test_parse_characters_normalises() -> None:
    assert parse_characters("Alice,Bob") == ("Alice", "Bob")
    assert parse_characters("Alice, Bob") == ("Alice", "Bob")
    assert parse_characters(" alice ,  bob ") == ("Alice", "Bob")
    assert parse_characters("alice,, ,bob,") == ("Alice", "Bob")
    assert parse_characters("Alice, alice, ALICE, Bob") == ("Alice", "Bob")
    assert parse_characters("mcDonald, O'Neil, Mary-Jane, mary  ann") == (
        "McDonald", "O'Neil", "Mary-Jane", "Mary ann",
    )
    assert parse_characters("zo\u00eb") == ("Zo\u00eb",)  # non-ASCII letters are letters
    assert parse_characters("Zoe\u0308, e\u0301lodie") == ("Zo\u00eb", "\u00c9lodie")  # composed
    assert parse_characters("") == ()
    assert parse_characters(" , ") == ()


@pytest.mark.parametrize("text", ["Bob3", "Al!ce", "Bob_the", "<|story|>", "-", "Zo\u00eb; x"])
def test_parse_characters_rejects_bad_characters(text: str) -> None:
    with pytest.raises(ValueError, match="letters"):
        parse_characters(text)


def test_parse_characters_rejects_long_names_and_too_many() -> None:
    assert parse_characters("A" * 30) == ("A" * 30,)
    with pytest.raises(ValueError, match="too long"):
        parse_characters("A" * 31)
    assert len(parse_characters("a,b,c,d,e,f")) == 6
    with pytest.raises(ValueError, match="too many"):
        parse_characters("a,b,c,d,e,f,g")


def test_validate_choice() -> None:
    assert validate_choice("theme", None) is None
    assert validate_choice("theme", "") is None
    assert validate_choice("theme", "  ") is None
    assert validate_choice("theme", "Adventure") == "adventure"
    assert validate_choice("tone", " CALM ") == "calm"
    assert validate_choice("genre", "Sci-Fi") == "sci-fi"
    assert validate_choice("genre", "sci fi") == "sci-fi"
    assert validate_choice("genre", "scifi") == "sci-fi"
    for alias in ("animal_fable", "animal-fable", "Animal Fable", "animal fable"):
        assert validate_choice("genre", alias) == "animal fable"
    assert validate_choice("genre", "everyday_life") == "everyday life"
    for field, values in (("theme", THEMES), ("tone", TONES), ("genre", GENRES)):
        for value in values:
            assert validate_choice(field, value.upper()) == value


def test_validate_choice_error_lists_valid_values() -> None:
    with pytest.raises(ValueError) as info:
        validate_choice("theme", "pirates")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("unknown theme 'pirates'; choose one of: adventure, courage, ")
    assert all(value in message for value in THEMES)
    with pytest.raises(ValueError, match=r"unknown genre 'western'; choose one of: .*sci-fi"):
        validate_choice("genre", "western")
    with pytest.raises(ValueError):
        validate_choice("mood", "calm")


# ---------------------------------------------------------------------------------------------
# Control prefix and field dropping
# ---------------------------------------------------------------------------------------------


def test_control_tokens() -> None:
    assert CONTROL_TOKENS == (
        "<|endoftext|>", "<|story|>", "<|theme|>", "<|tone|>", "<|genre|>", "<|characters|>",
    )
    assert END_OF_STORY == "<|endoftext|>"
    assert STORY_START == "<|story|>"


def test_control_prefix_exact() -> None:
    full = StoryLabels("adventure", "cheerful", "fantasy", ("Alice", "Bob"))
    assert control_prefix(full) == (
        "<|theme|> adventure<|tone|> cheerful<|genre|> fantasy<|characters|> Alice, Bob<|story|>"
    )
    assert control_prefix(StoryLabels()) == "<|story|>"
    assert control_prefix(StoryLabels(tone="calm")) == "<|tone|> calm<|story|>"
    assert control_prefix(StoryLabels(genre="animal fable", characters=("Spot",))) == (
        "<|genre|> animal fable<|characters|> Spot<|story|>"
    )
    assert control_prefix(StoryLabels(theme="", characters=())) == "<|story|>"


def test_story_labels_is_frozen_and_keeps_tuples() -> None:
    labels = StoryLabels(characters=["Ann", "Bob"])  # type: ignore[arg-type]
    assert labels.characters == ("Ann", "Bob")
    with pytest.raises(AttributeError):
        labels.theme = "magic"  # type: ignore[misc]


FULL = StoryLabels("magic", "funny", "fantasy", ("Ann", "Bob"))


def test_drop_fields_extremes() -> None:
    rng = random.Random(0)
    assert all(drop_fields(FULL, rng, p=0.0) == FULL for _ in range(50))
    assert all(drop_fields(FULL, rng, p=1.0) == StoryLabels() for _ in range(50))
    with pytest.raises(ValueError):
        drop_fields(FULL, rng, p=1.5)


def test_drop_fields_statistics() -> None:
    rng = random.Random(1234)
    n, p = 4000, 0.3
    kept = {"theme": 0, "tone": 0, "genre": 0, "characters": 0}
    subsets = set()
    for _ in range(n):
        out = drop_fields(FULL, rng, p=p)
        for name in kept:
            kept[name] += bool(getattr(out, name))
        subsets.add(tuple(bool(getattr(out, name)) for name in kept))
        if out.characters:
            assert out.characters == FULL.characters
    for name, count in kept.items():
        # expected 0.7; 4000 draws give a standard deviation of about 0.007
        assert abs(count / n - (1 - p)) < 0.035, (name, count)
    assert len(subsets) == 16  # every subset of settings occurs


def test_drop_fields_deterministic() -> None:
    a = [drop_fields(FULL, random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


# ---------------------------------------------------------------------------------------------
# Name pool and swapping
# ---------------------------------------------------------------------------------------------


def test_name_pool_sizes_and_shape() -> None:
    assert set(NAME_POOL) == {"female", "male", "neutral"}
    assert len(NAME_POOL["female"]) >= 150
    assert len(NAME_POOL["male"]) >= 150
    assert len(NAME_POOL["neutral"]) >= 60
    everything = [name for names in NAME_POOL.values() for name in names] + list(PET_NAMES)
    assert len(everything) == len(set(everything)), "duplicate names across lists"
    lowered = [name.lower() for name in everything]
    assert len(lowered) == len(set(lowered))
    for name in everything:
        assert re.fullmatch(r"[A-Z][a-z]{1,9}", name), name


def test_pool_names_do_not_trigger_label_keywords() -> None:
    # Swapping names must not change a story's labels.
    everything = [name for names in NAME_POOL.values() for name in names] + list(PET_NAMES)
    text = ". ".join(everything)
    for field in ("theme", "tone", "genre"):
        assert all(score == 0 for score in label_scores(text, field).values()), field


SWAP_STORY = (
    "Once upon a time, there was a girl named Lily and a boy named Tom. Tom's favourite food "
    "was a tomato. Lily said, \"Tom, look!\" Tommy, Tom's cousin, laughed. Tomato soup was "
    "ready. Lily's dog, Spot, barked. Tom and Lily ate. 'Tom,' said Lily."
)


def test_swap_names_consistent_whole_words() -> None:
    new_story, new_chars = swap_names(SWAP_STORY, ("Lily", "Tom"), random.Random(0))
    lily, tom = new_chars
    assert "Lily" not in new_story
    assert re.search(r"\bTom\b", new_story) is None
    assert new_story.count(tom) == SWAP_STORY.count("Tom") - SWAP_STORY.count("Tomato") - (
        SWAP_STORY.count("Tommy")
    )
    assert f"{tom}'s favourite" in new_story and f"{lily}'s dog" in new_story
    # Partial words are untouched.
    assert "tomato" in new_story and "Tomato soup" in new_story and "Tommy" in new_story
    assert "Spot" in new_story  # not in `characters`, so left alone
    # The story is otherwise unchanged.
    back = new_story.replace(lily, "Lily").replace(tom, "Tom")
    assert back == SWAP_STORY


def test_swap_names_distinct_from_pool_and_gendered() -> None:
    for seed in range(30):
        _, (lily, tom) = swap_names(SWAP_STORY, ("Lily", "Tom"), random.Random(seed))
        assert lily != tom
        assert lily in NAME_POOL["female"], lily
        assert tom in NAME_POOL["male"], tom
        assert lily not in ("Lily", "Tom", "Spot") and tom not in ("Lily", "Tom", "Spot")


def test_swap_names_gender_of_known_names_without_cues() -> None:
    story = "Lily, Tom, Sue and Ben ran to the park. They ate cake."
    for seed in range(10):
        _, new = swap_names(story, ("Lily", "Tom", "Sue", "Ben"), random.Random(seed))
        assert new[0] in NAME_POOL["female"] and new[2] in NAME_POOL["female"]
        assert new[1] in NAME_POOL["male"] and new[3] in NAME_POOL["male"]
        assert len(set(new)) == 4


def test_swap_names_gender_from_pronouns_and_animals() -> None:
    story = (
        "Zed was a tall child. Zed said she liked her red hat. Kip was a boy. "
        "Kip said he liked his blue car. Rufo the puppy wagged his tail. Quin waved."
    )
    chars = ("Zed", "Kip", "Rufo", "Quin")
    _, new = swap_names(story, chars, random.Random(3))
    assert new[0] in NAME_POOL["female"]
    assert new[1] in NAME_POOL["male"]
    assert new[2] in PET_NAMES
    assert new[3] in NAME_POOL["neutral"]
    assert len(set(new)) == 4


def test_swap_names_known_pet_names() -> None:
    story = "Fluffy jumped on the bed. Lily laughed at Fluffy."
    _, new = swap_names(story, ("Fluffy", "Lily"), random.Random(0))
    assert new[0] in PET_NAMES and new[1] in NAME_POOL["female"]


def test_swap_names_deterministic_and_order() -> None:
    a = swap_names(SWAP_STORY, ("Tom", "Lily"), random.Random(42))
    b = swap_names(SWAP_STORY, ("Tom", "Lily"), random.Random(42))
    assert a == b
    assert a[1][0] in NAME_POOL["male"] and a[1][1] in NAME_POOL["female"]
    seen = {swap_names(SWAP_STORY, ("Tom",), random.Random(s))[1] for s in range(20)}
    assert len(seen) > 5  # different seeds give varied names


def test_swap_names_avoids_words_already_in_story() -> None:
    # Every male pool name but one already appears in the story: that one must be chosen.
    spare = NAME_POOL["male"][17]
    others = " ".join(n for n in NAME_POOL["male"] if n != spare)
    story = f"Tom ran. He was fast. {others}."
    for seed in range(5):
        _, new = swap_names(story, ("Tom",), random.Random(seed))
        assert new == (spare,)


def test_swap_names_empty_and_duplicates() -> None:
    assert swap_names("A story.", (), random.Random(0)) == ("A story.", ())
    story, new = swap_names("Tom ran.", ("Tom", "Tom"), random.Random(0))
    assert new[0] == new[1] and story == f"{new[0]} ran."


def test_swap_then_find_characters_round_trip() -> None:
    story = THEME_STORIES["friendship"]
    chars = find_characters(story)
    assert chars == ("Lily", "Sue")
    new_story, new_chars = swap_names(story, chars, random.Random(5))
    assert find_characters(new_story) == new_chars
    assert derive_labels(new_story).theme == derive_labels(story).theme
