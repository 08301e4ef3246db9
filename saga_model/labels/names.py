"""Name lists: common TinyStories names, and the pools that swapped-in names come from."""

from __future__ import annotations


def word_list(text: str) -> tuple[str, ...]:
    """The whitespace-separated words of a multi-line string."""
    return tuple(text.split())


#: Adjectives and colours that TinyStories capitalises at the start of a sentence ("Blue
#: birds flew") or in titles; they count as names only when introduced ("a bird named Blue").
NAMES_ONLY_IF_INTRODUCED: frozenset[str] = frozenset(word_list("""
    little big small tiny giant old young new good bad best great nice happy sad silly funny
    blue red green yellow orange purple pink black white brown gray grey gold golden silver
    sun moon star sky rain snow cloud sunny lucky brave kind sweet dear fluffy furry
    """))

#: Common TinyStories character names with their usual gender (used by :func:`swap_names`
#: and to accept names that only ever start a sentence).
KNOWN_FEMALE: frozenset[str] = frozenset(word_list("""
    Lily Sue Lucy Mia Amy Sally Daisy Sarah Sara Jane Emma Anna Mary Molly Bella Ella Grace
    Emily Luna Lola Millie Milly Sophie Tina Polly Rose Betty Poppy Penny Lisa Annie Rachel
    Julie Jenny Jen Ann Lizzie Rosie Emmy Susie Claire Dolly Lilly Alice Abigail Kate Mandy
    Gina Jenna Ellie Jill Tilly Lila Lulu Julia Mimi Zoe Chloe Kim Amelia Olivia Ava Sophia
    Isabella Katie Meg Maggie Nina Hannah Laura Linda Susan Karen Beth Jess Jessica Megan
    Olive Lizzy Maddie Lucie Lexi Leah Ruby Hazel Ivy Violet Stella Nora Hattie Eva
    """))
KNOWN_MALE: frozenset[str] = frozenset(word_list("""
    Tim Tom Max Timmy Sam Bob Jack Ben Billy John Joe Benny Andy Jerry Sammy Bobby Leo Fred
    Peter Jake Pete Mark Bill Jimmy Harry James Henry Gary Todd Johnny Freddy George Dave
    Ollie Jim Tommy Joey Danny Tony Finn Fin Toby Mike Michael David Daniel Adam Luke Paul
    Steve Kevin Ryan Jason Eric Nick Matt Josh Chris Roy Ted Ned Ron Don Dan Rob Bert Ernie
    Oliver Jacob Ethan Lucas Mason Logan Noah Liam Owen Jayden Ricky Robbie Robert Richard
    William Willy Walter Frank Larry Simon Carl Kyle Zack Zach Luis Jose Juan Carlos
    """))

#: Names TinyStories gives to animals; treated as animal names by :func:`swap_names`.
KNOWN_PET_NAMES: frozenset[str] = frozenset(word_list("""
    Spot Fluffy Kitty Bobo Whiskers Buddy Mittens Chirpy Tweetie Tweety Tweet Ducky Momo
    Buzz Buzzy Spike Rover Doggy Birdy Pandy Bongo Coco Nutty Brownie Snowy Patch Fido Rex
    Pip Binky Pinky Speedy Zoom Hoppy Bunny Teddy Bubbles Sparky Fuzzy Furry Squeaky Shelly
    Goldie Tiger Lucky Sunny Smokey Muffin Peanut Cookie Jazz Boo Puff Nibbles
    Flappy Quacky Hoot Hooty Slimy Slither Stripes Spotty Oreo Ginger Blue Red
    """))

#: First names from many cultures used to replace character names during training, so that
#: the model learns to write about any name given with ``--characters``.  ASCII letters only,
#: 2-10 letters, capitalised, no duplicates across lists, and no ordinary English words (a
#: swapped-in name must not look like a keyword of a label lexicon).
NAME_POOL: dict[str, tuple[str, ...]] = {
    "female": tuple(word_list("""
        Zara Aiko Ines Priya Noor Amara Ayesha Fatima Leila Yasmin Mei Hana Yuki Sakura Keiko
        Emiko Naomi Mina Jia Xiu Ling Suki Misaki Haruka Yumi Nari Minji Hyejin Seoyeon
        Ananya Anika Diya Isha Kavya Meera Nisha Pooja Riya Sana Asha Lakshmi Divya Gita
        Nandini Sunita Aditi Amira Aisha Layla Zainab Mariam Salma Rania Dina Hiba Lina Nadia
        Samira Huda Farah Yara Rana Ama Abena Adaeze Chiamaka Ngozi Nia Imani Zuri Folake Kemi
        Nkechi Thandi Zola Wanjiru Akosua Efua Makena Nala Sade Yetunde Halima Ife Sofia Elena
        Clara Greta Ingrid Freya Astrid Elsa Sigrid Lena Anja Katya Olga Irina Natasha Milena
        Zofia Agata Marta Lucia Chiara Giulia Paola Carmen Pilar Beatriz Leonor Mathilde
        Margaux Celine Colette Amelie Eloise Heidi Liesel Saoirse Niamh Aoife Siobhan Fiona
        Isla Maeve Cerys Ivana Petra Zuzana Ilona Annika Maja Ebba Linnea Camila Valentina
        Ximena Paloma Marisol Itzel Citlali Renata Daniela Gabriela Mariana Fernanda Isabela
        Leilani Malia Anela Mahina Aroha Ngaire Kiri Harriet Matilda Beatrice Florence Imogen
        Phoebe Edith Esme Cora Maisie Audrey Evelyn Maya Shira Tamar Dalia Shirin Parisa Roya
        Nasrin Elif Zeynep Ayla Defne Linh Thu Hoa Ngoc Siti Putri Dewi Ayu Malee Kanya
        Anahera Sina Wilhelmina Rosalind Ottilie Juniper Ayasha Winona Kaya Talise
        """)),
    "male": tuple(word_list("""
        Milo Kofi Mateo Sven Olu Kenji Hiroshi Takumi Haruto Sota Daiki Kaito Yuto Riku Wei
        Jun Hao Ming Chen Jian Lei Tao Minho Jisung Hyun Seojun Taeyang Arjun Rohan Ravi
        Vikram Aarav Dev Kabir Rahul Sanjay Vivek Anil Ishaan Karan Nikhil Amit Rajesh Sunil
        Aditya Pranav Omar Yusuf Karim Tariq Samir Hassan Ali Bilal Idris Zayd Faris Rami
        Nabil Khalid Hamza Ibrahim Malik Amir Jamal Ziad Kwame Kwesi Tunde Chidi Emeka Obi
        Jabari Baraka Juma Thabo Sipho Mandla Kato Musa Femi Ade Kojo Chinedu Kamau Otieno
        Lars Nils Erik Bjorn Anders Olaf Leif Jonas Matteo Luca Marco Paolo Giorgio Enzo
        Diego Pablo Javier Rafael Tomas Hugo Louis Pierre Julien Luc Bastien Felix Lukas
        Anton Moritz Emil Oskar Ivan Dmitri Pavel Mikhail Boris Milan Marek Jakub Piotr
        Stefan Niko Aleksi Eino Cian Oisin Declan Rhys Owain Callum Angus Fergus Finlay
        Seamus Conor Santiago Joaquin Emiliano Rodrigo Thiago Gael Iker Mauricio Alonso Bruno
        Caio Davi Inti Keanu Makoa Nikolai Elias Theo Arlo Otto Jasper Rufus Alfie Archie
        Oscar Edgar Silas Ezra Eli Isaac Caleb Gideon Reuben Levi Samuel Jonah Ahmed Mustafa
        Yosef Avi Eitan Noam Ilan Arash Dariush Reza Kian Mehmet Emre Burak Kerem Arda Minh
        Duc Bao Quang Huy Tuan Somchai Anan Rizal Budi Agus Joko Sione Tane Wiremu Rawiri
        """)),
    "neutral": tuple(word_list("""
        Kai Ayo Ren Sasha Jordan Taylor Morgan Riley Casey Jamie Quinn Charlie Frankie Kalani
        Noa Amani Nuri Ari Tenzin Dana Shiloh Emery Ellis Hayden Harper Jules Marley Reese
        Skyler Teagan Toni Zion Nima Kiran Kamari Jaden Dakota Cameron Rory Sidney Blair
        Ainsley Arden Darcy Devon Elliot Emerson Hollis Jessie Kendall Lennon Lennox Micah
        Oakley Parker Peyton Tatum Umi Yael Haru Hikaru Akira Makoto Kaoru Lumi Mika Nikita
        Jin Tendai Anh Sol Eden Avery Remi Koa Alexis Ashley Adrian
        """)),
}

#: Names for animal characters (pets and the heroes of animal fables).
PET_NAMES: tuple[str, ...] = tuple(word_list("""
    Biscuit Pepper Mochi Ziggy Noodle Pickles Waffles Nugget Sprinkles Toffee Maple Pumpkin
    Marble Pebbles Clover Domino Gizmo Jellybean Tofu Dumpling Wasabi Paprika Cinnamon Nutmeg
    Sesame Cocoa Fudge Truffle Popcorn Pudding Zuzu Kiki Bramble Thistle Scruffy Patches
    Sprout Tumble Pogo Bingo Yoyo Taco Kiwi Mango Tiko Zippy Flick Squiggle Puddles Ripple
    Dottie Waddles Mopsy Pancake Bamboo Barnaby Figaro Rascal Tinker Wiggins
    """))

#: Every listed name that may be taken for a name even at the start of a sentence.
ALL_KNOWN_NAMES: frozenset[str] = frozenset(
    name
    for name in KNOWN_FEMALE
    | KNOWN_MALE
    | KNOWN_PET_NAMES
    | {n for names in NAME_POOL.values() for n in names}
    | set(PET_NAMES)
    if name.lower() not in NAMES_ONLY_IF_INTRODUCED
)
#: The gender list of each :data:`NAME_POOL` name.
POOL_GENDER: dict[str, str] = {
    name: gender for gender, names in NAME_POOL.items() for name in names
}
