#!/usr/bin/env node
// Generates the GPT-2 tokenizer fixture (tests/fixtures/bpe/gpt2_cases.json)
// with the reference encoder of the npm package gpt-3-encoder@1.1.4, so that
// common/text/bpe.c is checked against GPT-2's own ids rather than against itself.
// Run once and commit the output:
//
//   tmp=$(mktemp -d) && (cd $tmp && npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-*.tgz)
//   node tools/gen_bpe_fixture.js $tmp/package > tests/fixtures/bpe/gpt2_cases.json
//
// With --tables it instead prints the Unicode ranges that common/text/bpe.c uses
// for the pre-tokenizer's \p{L}, \p{N} and \s classes, as node's regex engine
// sees them (the same engine the reference encoder runs on).
'use strict';
const path = require('path');

if (process.argv[2] === '--tables') {
  const classes = { letter: /\p{L}/u, number: /\p{N}/u, space: /\s/u };
  for (const [name, re] of Object.entries(classes)) {
    const ranges = [];
    let start = -1;
    for (let cp = 0; cp <= 0x110000; cp++) {
      const ok = cp < 0x110000 && !(cp >= 0xd800 && cp <= 0xdfff) &&
                 re.test(String.fromCodePoint(cp));
      if (ok && start < 0) start = cp;
      if (!ok && start >= 0) { ranges.push([start, cp - 1]); start = -1; }
    }
    let out = `static const uint32_t bpe_${name}_ranges[][2] = {\n`;
    let line = '   ';
    for (const [a, b] of ranges) {
      const item = ` {0x${a.toString(16)}, 0x${b.toString(16)}},`;
      if (line.length + item.length > 96) { out += line + '\n'; line = '   '; }
      line += item;
    }
    out += line + '\n};\n';
    process.stdout.write(out);
  }
  process.exit(0);
}

const pkg = process.argv[2];
if (!pkg) { console.error('usage: gen_bpe_fixture.js PACKAGE_DIR | --tables'); process.exit(2); }
const { encode, decode } = require(path.resolve(pkg, 'Encoder.js'));

// Deterministic PRNG so that the fixture is reproducible.
let seed = 12345;
const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x80000000; };
const pick = a => a[Math.floor(rnd() * a.length)];

const cases = [
  '', ' ', '  ', '\n', '\n\n', '\t', ' \t\n ', 'a', 'A', '.', '!', '?', '0', '7', '42', '123456789',
  'Hello world', 'Hello, world!', 'hello   world', 'trailing space ', ' leading space',
  "don't", "Don't", "I'm", "you're", "we've", "she'll", "he'd", "it's", "IT'S", "I'M",
  "rock 'n' roll", "'quoted'", "the dog's bone", "the dogs' bones", "o'clock", "'s'", "''",
  'a photo of a great white shark.', 'A sketch of a goldfish swimming in a bowl at night.',
  'An oil painting of a tree frog sitting on a snowy road under the rain.',
  'a pixel art rendering of a school bus, parked in a cave.',
  'Two tabby cats and 3 golden retrievers on the grass at sunset.',
  'The year 2024 had 366 days; 1,000,000 people watched.', '3.14159 is pi', '1e-5', '-12', '+44 20 7946 0958',
  'CamelCaseWord', 'snake_case_word', 'kebab-case-word', 'UPPER CASE TEXT', 'MiXeD cAsE',
  'email@example.com', 'https://example.com/path?q=1&r=2#frag', 'C:\\Users\\path', '/usr/bin/env',
  '(parenthesised)', '[bracketed]', '{braced}', '<angle>', '"double quoted"', '...', '?!?!', '---', '***',
  'a\nb', 'a\n\nb', 'line one\nline two\n', 'a  b   c    d', 'tabs\tand\tspaces', 'end with newline\n',
  '   three leading', 'x\r\ny', '\u00a0nbsp', 'a\u00a0b', 'a\u3000b', 'a\u2003b',
  'café', 'naïve résumé', 'Ångström', 'über straße', 'façade', 'ﬁ ligature', 'Œuvre',
  'Привет, мир!', 'Ελληνικά', 'שלום', 'مرحبا بالعالم', 'हिन्दी', 'ไทย', '한국어 텍스트',
  '日本語のテキスト', '中文文本，标点。', 'こんにちは世界', '😀', 'I ❤ NY', '👍🏽 thumbs', '👨‍👩‍👧 family',
  '🦈 shark', 'mixed 中文 and English', 'numbers ١٢٣ arabic', 'roman Ⅻ numerals', '½ half', '²³ superscripts',
  '①②③', '٣ arabic-indic', 'x²', 'ℕ ℝ', '∑ ∫ ≈ ≠', '€100 and £50 and ¥1000', '$19.99', '100%',
  '#hashtag', '@mention', 'hello.world', 'end.', 'Mr. Smith', 'U.S.A.', 'e.g. i.e.',
  '      ', 'word      ', '\t\tindented', 'a \n b', ' \n', '\n ', ' !', '! ', ' 1', '1 ', ' é', 'é ',
  'a great white shark', 'the great white shark swims near a coral reef',
  'a tench held by a fisherman on a boat', 'a cartoon of a bald eagle flying over a foggy forest',
  'goldfinch', 'hummingbird', 'jellyfish', 'pomegranate', 'cheeseburger', 'volcano', 'submarine',
  'antidisestablishmentarianism', 'supercalifragilisticexpialidocious', 'Llanfairpwllgwyngyll',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'abababababababab', '1111111111111111', '!!!!!!!!!!!!',
  ' ,', ', ', ',,', 'a,b,c', 'x=1;y=2', 'f(x) = x^2 + 2x + 1', 'if (a && b || !c) {}',
  '<|endoftext|>', 'text <|endoftext|> more', 'ĠĊ', 'Ġhello', 'Ã©', 'Â',
];

const words = ['a', 'the', 'photo', 'of', 'shark', 'dog', 'cat', 'bird', 'in', 'on', 'snow', 'forest',
  'night', 'painting', 'sketch', 'red', 'blue', 'tiny', 'huge', 'rusty', 'banana', 'zebra', 'café',
  'München', 'Zürich', 'naïve', 'jalapeño', '東京', 'Москва', 'λόγος', '2', '17', '1999', '3.5',
  "isn't", "they're", "I'll", "we'd", "you've", "it's", 'x', 'Q', 'HTTP', 'XML', 'iPhone', 'McDonald'];
const seps = [' ', ' ', ' ', ' ', '  ', ', ', '. ', '! ', '? ', '; ', ' - ', '\n', '\t', ' (', ') ', '"', "'", ' / '];
while (cases.length < 320) {
  const n = 1 + Math.floor(rnd() * 12);
  let s = rnd() < 0.2 ? pick([' ', '\n', '  ', '"', "'"]) : '';
  for (let i = 0; i < n; i++) {
    let w = pick(words);
    if (rnd() < 0.15) w = w[0].toUpperCase() + w.slice(1);
    if (rnd() < 0.05) w = w.toUpperCase();
    s += w + (i < n - 1 ? pick(seps) : '');
  }
  if (rnd() < 0.5) s += pick(['.', '!', '?', '', '...', ' ', '\n', '  ']);
  cases.push(s);
}

const out = cases.map(text => {
  const ids = encode(text);
  if (decode(ids) !== text) throw new Error('reference round trip failed for ' + JSON.stringify(text));
  return { text, ids };
});
process.stdout.write('[\n' + out.map(c => JSON.stringify(c)).join(',\n') + '\n]\n');
