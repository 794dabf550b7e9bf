/* shape.c: a class's procedural object and its typical context.
 *
 * Everything here derives from the class's wnid through one hash, so a class
 * looks the same in every world, whatever list it sits in, and any list works.
 * The object is composed from primitives (a body that is an ellipse, rounded
 * box, polygon, star, teardrop or crescent; a head; pairs of limbs; fins; a
 * tail; holes; a pattern; an eye) in a canonical frame and rasterised once into
 * a label mask that the renderer samples with an affine map.
 *
 * The base prior is deliberately skewed: a class lives mostly in one or two
 * scenes and one or two colours, as a photo, by day, medium-sized, alone.
 * Where the class name says something obvious (a shark lives in water, a cab
 * on a road) the first usual scene follows the name, which makes the
 * correlations plausible as well as spurious.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "world/internal.h"

uint64_t sf_world__hash_str(const char *s) { return sf_world__mix(sf_fnv1a_str(s)); }

int sf_world__draw(sf_rng_t *r, const double *probs, int n) {
    double u = sf_rng_unif(r), acc = 0;
    for (int i = 0; i < n; i++) {
        acc += probs[i];
        if (u < acc) return i;
    }
    return n - 1;
}

/* ---- shape ---------------------------------------------------------------- */

enum { BODY_ELLIPSE, BODY_BOX, BODY_POLYGON, BODY_STAR, BODY_TEARDROP,
       BODY_CRESCENT, N_BODIES };
enum { PAT_NONE, PAT_STRIPES, PAT_SPOTS, PAT_BAND, PAT_RINGS, PAT_CHECKER,
       N_PATTERNS };

typedef struct { float x0, y0, x1, y1, t; } seg_t;
typedef struct { float ax, ay, bx, by, cx, cy; } tri_t;

typedef struct {
    int body, nsides, pattern;
    float rx, ry, ang, star_in;
    float ca, sa, pc, ps;  /* cos/sin of the body and pattern angles */
    int has_head;
    float hx, hy, hr;
    seg_t limbs[8];
    int n_limbs;
    tri_t fins[2];
    int n_fins;
    float holes[3][3];
    int n_holes;
    float pat_period, pat_angle, pat_k;
    float eye_x, eye_y, eye_r;
} shape_t;

static float frand(sf_rng_t *r, float a, float b) { return a + (b - a) * (float)sf_rng_unif(r); }

static int in_body(const shape_t *s, float x, float y) {
    float u = s->ca * x + s->sa * y, v = -s->sa * x + s->ca * y;
    float nx = u / s->rx, ny = v / s->ry;
    switch (s->body) {
    case BODY_ELLIPSE: return nx * nx + ny * ny <= 1;
    case BODY_BOX: return nx * nx * nx * nx + ny * ny * ny * ny <= 1;
    case BODY_POLYGON:
    case BODY_STAR: {
        float rr = sqrtf(nx * nx + ny * ny), th = atan2f(ny, nx) + 1.5707963f;
        float seg = 6.2831853f / (float)s->nsides;
        float f = fmodf(th + 62.831853f, seg) / seg;  /* 0..1 within a sector */
        if (s->body == BODY_POLYGON) {
            float lim = cosf(3.14159265f / (float)s->nsides) /
                        cosf((f - 0.5f) * seg);
            return rr <= lim;
        }
        float tri = fabsf(f - 0.5f) * 2;  /* 1 at the tips, 0 between */
        return rr <= s->star_in + (1 - s->star_in) * tri;
    }
    case BODY_TEARDROP: {
        float w = 0.55f + 0.45f * (1 - nx) * 0.5f;  /* wide at one end */
        return nx * nx + (ny / w) * (ny / w) <= 1;
    }
    case BODY_CRESCENT: {
        if (nx * nx + ny * ny > 1) return 0;
        float mx = nx - 0.55f, my = ny + 0.15f;
        return mx * mx + my * my > 0.55f;
    }
    }
    return 0;
}

static int in_seg(const seg_t *g, float x, float y) {
    float dx = g->x1 - g->x0, dy = g->y1 - g->y0;
    float t = ((x - g->x0) * dx + (y - g->y0) * dy) / (dx * dx + dy * dy + 1e-9f);
    if (t < 0) t = 0;
    if (t > 1) t = 1;
    float px = g->x0 + t * dx - x, py = g->y0 + t * dy - y;
    return px * px + py * py <= g->t * g->t;
}

static float cross(float ax, float ay, float bx, float by, float px, float py) {
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

static int in_tri(const tri_t *t, float x, float y) {
    float a = cross(t->ax, t->ay, t->bx, t->by, x, y);
    float b = cross(t->bx, t->by, t->cx, t->cy, x, y);
    float c = cross(t->cx, t->cy, t->ax, t->ay, x, y);
    return (a >= 0 && b >= 0 && c >= 0) || (a <= 0 && b <= 0 && c <= 0);
}

/* A point on the body's outline in direction `a` (walks out until outside). */
static void body_edge(const shape_t *s, float a, float *x, float *y) {
    float r = 0;
    while (r < 1.2f && in_body(s, r * cosf(a), r * sinf(a))) r += 0.02f;
    *x = r * cosf(a);
    *y = r * sinf(a);
}

static void shape_make(shape_t *s, sf_rng_t *r) {
    memset(s, 0, sizeof *s);
    s->body = sf_rng_int(r, N_BODIES);
    s->nsides = 3 + sf_rng_int(r, 5);
    s->star_in = frand(r, 0.45f, 0.7f);
    s->rx = frand(r, 0.45f, 0.72f);
    s->ry = frand(r, 0.28f, 0.6f);
    if (sf_rng_int(r, 3) == 0) {  /* some classes are tall, not wide */
        float t = s->rx; s->rx = s->ry; s->ry = t;
    }
    s->ang = sf_rng_int(r, 2) ? 0 : frand(r, -0.4f, 0.4f);
    s->ca = cosf(s->ang);
    s->sa = sinf(s->ang);
    s->has_head = sf_rng_int(r, 10) < 6;
    float head_a = -1.5707963f + frand(r, -1.3f, 1.3f);  /* upward-ish */
    if (s->has_head) {
        body_edge(s, head_a, &s->hx, &s->hy);
        s->hr = frand(r, 0.14f, 0.27f);
    }
    int pairs = sf_rng_int(r, 4);
    float t = frand(r, 0.045f, 0.09f), len = frand(r, 0.25f, 0.45f);
    for (int i = 0; i < pairs; i++) {
        float a = frand(r, 0.35f, 1.35f) + (sf_rng_int(r, 2) ? 0 : 1.5f);  /* lower half or sides */
        float x, y, dir = a + frand(r, -0.4f, 0.4f);
        body_edge(s, a, &x, &y);
        seg_t g = {x * 0.85f, y * 0.85f, x + len * cosf(dir), y + len * sinf(dir), t};
        s->limbs[s->n_limbs++] = g;
        seg_t m = {-g.x0, g.y0, -g.x1, g.y1, t};  /* mirror image */
        s->limbs[s->n_limbs++] = m;
    }
    if (sf_rng_int(r, 5) < 2) {  /* a tail opposite the head */
        float a = head_a + 3.14159265f + frand(r, -0.4f, 0.4f), x, y;
        body_edge(s, a, &x, &y);
        float l = frand(r, 0.3f, 0.5f), bend = frand(r, -0.5f, 0.5f);
        seg_t g = {x * 0.9f, y * 0.9f, x + l * cosf(a + bend), y + l * sinf(a + bend), t * 0.8f};
        if (s->n_limbs < 8) s->limbs[s->n_limbs++] = g;
    }
    s->n_fins = sf_rng_int(r, 3);
    for (int i = 0; i < s->n_fins; i++) {
        float a = (i == 0 ? -1.5707963f : 1.5707963f) + frand(r, -0.5f, 0.5f), x, y;
        body_edge(s, a, &x, &y);
        float w = frand(r, 0.12f, 0.25f), h = frand(r, 0.2f, 0.38f);
        float nx = cosf(a), ny = sinf(a), tx = -ny, ty = nx;
        tri_t f = {x - tx * w - nx * 0.05f, y - ty * w - ny * 0.05f,
                   x + tx * w - nx * 0.05f, y + ty * w - ny * 0.05f,
                   x + nx * h + tx * frand(r, -0.15f, 0.15f), y + ny * h + ty * frand(r, -0.15f, 0.15f)};
        s->fins[i] = f;
    }
    s->n_holes = sf_rng_int(r, 4) == 0 ? 1 + sf_rng_int(r, 2) : 0;
    for (int i = 0; i < s->n_holes; i++) {
        s->holes[i][0] = frand(r, -0.4f, 0.4f) * s->rx;
        s->holes[i][1] = frand(r, -0.3f, 0.3f) * s->ry;
        s->holes[i][2] = frand(r, 0.07f, 0.13f);
    }
    s->pattern = sf_rng_int(r, N_PATTERNS);
    s->pat_period = frand(r, 0.18f, 0.36f);
    s->pat_angle = (float)sf_rng_int(r, 4) * 0.785398f;
    s->pc = cosf(s->pat_angle);
    s->ps = sinf(s->pat_angle);
    s->pat_k = frand(r, -0.2f, 0.3f);
    if (s->has_head) {
        s->eye_x = s->hx + 0.35f * s->hr;
        s->eye_y = s->hy - 0.2f * s->hr;
        s->eye_r = s->hr * 0.32f;
    } else {
        s->eye_x = s->rx * 0.45f;
        s->eye_y = -s->ry * 0.35f;
        s->eye_r = 0.07f;
    }
}

static int pattern_at(const shape_t *s, float x, float y) {
    float u = s->pc * x + s->ps * y, v = -s->ps * x + s->pc * y;
    float p = s->pat_period;
    switch (s->pattern) {
    case PAT_STRIPES: return fmodf(u + 10 * p, p) < 0.45f * p;
    case PAT_SPOTS: {
        float gx = fmodf(u + 10 * p, p) - p / 2, gy = fmodf(v + 10 * p, p) - p / 2;
        return gx * gx + gy * gy < 0.09f * p * p;
    }
    case PAT_BAND: return y > s->pat_k * s->ry;
    case PAT_RINGS: return fmodf(sqrtf(x * x + y * y) + 10 * p, p) < 0.4f * p;
    case PAT_CHECKER: {
        int a = (int)floorf(u / p), b = (int)floorf(v / p);
        return ((a + b) & 1) != 0;
    }
    }
    return 0;
}

static int label_at(const shape_t *s, float x, float y) {
    float ex = x - s->eye_x, ey = y - s->eye_y;
    int body = in_body(s, x, y), head = 0;
    if (s->has_head) {
        float hx = x - s->hx, hy = y - s->hy;
        head = hx * hx + hy * hy <= s->hr * s->hr;
    }
    if ((body || head) && ex * ex + ey * ey <= s->eye_r * s->eye_r) return SF_LAB_DETAIL;
    if (body) {
        for (int i = 0; i < s->n_holes; i++) {
            float hx = x - s->holes[i][0], hy = y - s->holes[i][1];
            if (hx * hx + hy * hy <= s->holes[i][2] * s->holes[i][2]) return SF_LAB_BG;
        }
        return pattern_at(s, x, y) ? SF_LAB_PATTERN : SF_LAB_BODY;
    }
    if (head) return SF_LAB_BODY;
    for (int i = 0; i < s->n_limbs; i++)
        if (in_seg(&s->limbs[i], x, y)) return SF_LAB_PATTERN;
    for (int i = 0; i < s->n_fins; i++)
        if (in_tri(&s->fins[i], x, y)) return SF_LAB_PATTERN;
    return SF_LAB_BG;
}

/* ---- typical context ------------------------------------------------------- */

/* Words in a class name that fix its first usual scene.  Matched as
 * substrings of the lower-cased name and lemmas; first hit wins. */
static const struct { const char *word; int scene; } scene_words[] = {
    {"shark", SF_SCENE_WATER}, {"fish", SF_SCENE_WATER}, {"ray", SF_SCENE_WATER},
    {"stingray", SF_SCENE_WATER}, {"goldfish", SF_SCENE_WATER}, {"eel", SF_SCENE_WATER},
    {"axolotl", SF_SCENE_WATER}, {"newt", SF_SCENE_WATER}, {"hippopotamus", SF_SCENE_WATER},
    {"beaver", SF_SCENE_WATER}, {"otter", SF_SCENE_WATER}, {"snorkel", SF_SCENE_WATER},
    {"whale", SF_SCENE_WATER}, {"jellyfish", SF_SCENE_WATER}, {"lobster", SF_SCENE_WATER},
    {"boat", SF_SCENE_WATER}, {"ship", SF_SCENE_WATER}, {"canoe", SF_SCENE_WATER},
    {"submarine", SF_SCENE_WATER}, {"duck", SF_SCENE_WATER}, {"goose", SF_SCENE_WATER},
    {"pelican", SF_SCENE_WATER}, {"seal", SF_SCENE_WATER}, {"turtle", SF_SCENE_WATER},
    {"frog", SF_SCENE_WATER}, {"starfish", SF_SCENE_WATER}, {"schooner", SF_SCENE_WATER},
    {"crab", SF_SCENE_SAND}, {"tortoise", SF_SCENE_SAND}, {"snail", SF_SCENE_GRASS},
    {"eagle", SF_SCENE_SKY}, {"vulture", SF_SCENE_SKY}, {"balloon", SF_SCENE_SKY},
    {"airliner", SF_SCENE_SKY}, {"airship", SF_SCENE_SKY}, {"hummingbird", SF_SCENE_SKY},
    {"kite", SF_SCENE_SKY}, {"parachute", SF_SCENE_SKY},
    {"scorpion", SF_SCENE_DESERT}, {"camel", SF_SCENE_DESERT}, {"lizard", SF_SCENE_DESERT},
    {"iguana", SF_SCENE_DESERT}, {"chameleon", SF_SCENE_FOREST}, {"snake", SF_SCENE_DESERT},
    {"bear", SF_SCENE_FOREST}, {"wolf", SF_SCENE_FOREST}, {"fox", SF_SCENE_FOREST},
    {"owl", SF_SCENE_FOREST}, {"squirrel", SF_SCENE_FOREST}, {"spider", SF_SCENE_FOREST},
    {"monkey", SF_SCENE_FOREST}, {"chimpanzee", SF_SCENE_FOREST}, {"gorilla", SF_SCENE_FOREST},
    {"orangutan", SF_SCENE_FOREST}, {"mushroom", SF_SCENE_FOREST}, {"skunk", SF_SCENE_FOREST},
    {"penguin", SF_SCENE_SNOW}, {"husky", SF_SCENE_SNOW}, {"malamute", SF_SCENE_SNOW},
    {"snowplow", SF_SCENE_SNOW}, {"polar", SF_SCENE_SNOW}, {"ski", SF_SCENE_SNOW},
    {"car", SF_SCENE_ROAD}, {"cab", SF_SCENE_ROAD}, {"truck", SF_SCENE_ROAD},
    {"bus", SF_SCENE_ROAD}, {"bike", SF_SCENE_ROAD}, {"bicycle", SF_SCENE_ROAD},
    {"motor", SF_SCENE_ROAD}, {"scooter", SF_SCENE_ROAD}, {"jeep", SF_SCENE_ROAD},
    {"ambulance", SF_SCENE_ROAD}, {"engine", SF_SCENE_ROAD}, {"tractor", SF_SCENE_ROAD},
    {"wagon", SF_SCENE_ROAD}, {"tank", SF_SCENE_ROAD}, {"hydrant", SF_SCENE_CITY},
    {"cup", SF_SCENE_INDOORS}, {"bottle", SF_SCENE_INDOORS}, {"chair", SF_SCENE_INDOORS},
    {"piano", SF_SCENE_INDOORS}, {"guitar", SF_SCENE_INDOORS}, {"lamp", SF_SCENE_INDOORS},
    {"clock", SF_SCENE_INDOORS}, {"phone", SF_SCENE_INDOORS}, {"candle", SF_SCENE_INDOORS},
    {"pizza", SF_SCENE_INDOORS}, {"burrito", SF_SCENE_INDOORS}, {"cake", SF_SCENE_INDOORS},
    {"banana", SF_SCENE_INDOORS}, {"lemon", SF_SCENE_INDOORS}, {"pineapple", SF_SCENE_INDOORS},
    {"strawberry", SF_SCENE_INDOORS}, {"broccoli", SF_SCENE_INDOORS}, {"bagel", SF_SCENE_INDOORS},
    {"pretzel", SF_SCENE_INDOORS}, {"cheeseburger", SF_SCENE_INDOORS}, {"hotdog", SF_SCENE_INDOORS},
    {"hot dog", SF_SCENE_INDOORS}, {"saxophone", SF_SCENE_INDOORS}, {"accordion", SF_SCENE_INDOORS},
    {"violin", SF_SCENE_INDOORS}, {"harmonica", SF_SCENE_INDOORS}, {"tub", SF_SCENE_INDOORS},
    {"backpack", SF_SCENE_INDOORS}, {"shoe", SF_SCENE_INDOORS}, {"boot", SF_SCENE_INDOORS},
    {"bat", SF_SCENE_CAVE}, {"castle", SF_SCENE_GRASS}, {"lighthouse", SF_SCENE_SAND},
    {"cannon", SF_SCENE_GRASS}, {"mantis", SF_SCENE_GRASS}, {"grasshopper", SF_SCENE_GRASS},
    {"cockroach", SF_SCENE_INDOORS}, {"ant", SF_SCENE_GRASS}, {"bee", SF_SCENE_GRASS},
    {"dog", SF_SCENE_GRASS}, {"retriever", SF_SCENE_GRASS}, {"terrier", SF_SCENE_GRASS},
    {"hen", SF_SCENE_GRASS}, {"goldfinch", SF_SCENE_FOREST}, {"junco", SF_SCENE_SNOW},
    {"flamingo", SF_SCENE_WATER}, {"rocket", SF_SCENE_SPACE}, {"satellite", SF_SCENE_SPACE},
};

static const struct { const char *word; int color; } color_words[] = {
    {"gold", SF_COLOR_GOLD}, {"red", SF_COLOR_RED}, {"black", SF_COLOR_BLACK},
    {"white", SF_COLOR_WHITE}, {"green", SF_COLOR_GREEN}, {"orange", SF_COLOR_ORANGE},
    {"gray", SF_COLOR_GRAY}, {"grey", SF_COLOR_GRAY}, {"blue", SF_COLOR_BLUE},
    {"pink", SF_COLOR_PINK}, {"flamingo", SF_COLOR_PINK}, {"lemon", SF_COLOR_YELLOW},
    {"banana", SF_COLOR_YELLOW}, {"strawberry", SF_COLOR_RED}, {"broccoli", SF_COLOR_GREEN},
    {"pumpkin", SF_COLOR_ORANGE}, {"panda", SF_COLOR_WHITE}, {"polar", SF_COLOR_WHITE},
};

/* 1 if the name or a lemma contains `word` at the start of a word. */
static int names_contain(const sf_class_t *c, const char *word) {
    const char *texts[32];
    int n = 0;
    texts[n++] = c->name;
    for (int i = 0; i < c->n_lemmas && n < 32; i++) texts[n++] = c->lemmas[i];
    size_t wl = strlen(word);
    for (int i = 0; i < n; i++) {
        if (!texts[i]) continue;
        for (const char *p = texts[i]; *p; p++) {
            if (p != texts[i] && isalpha((unsigned char)p[-1])) continue;
            if (strncasecmp(p, word, wl) == 0) return 1;
        }
    }
    return 0;
}

/* Prior with `a` holding pa, `b` holding pb and the rest spread evenly. */
static void skewed(double *p, int n, int a, double pa, int b, double pb) {
    double rest = (1 - pa - (b >= 0 ? pb : 0)) / (n - 1 - (b >= 0 ? 1 : 0));
    for (int i = 0; i < n; i++) p[i] = rest;
    p[a] = pa;
    if (b >= 0) p[b] = pb;
}

static void fixed(double *p, const double *v, int n) {
    for (int i = 0; i < n; i++) p[i] = v[i];
}

static void prior_make(sf_world_class_t *c, const sf_class_t *cls, sf_rng_t *r) {
    int s1 = -1;
    for (size_t i = 0; i < sizeof scene_words / sizeof scene_words[0] && s1 < 0; i++)
        if (names_contain(cls, scene_words[i].word)) s1 = scene_words[i].scene;
    /* Space is a rare habitat: only classes whose name puts them there. */
    if (s1 < 0) s1 = sf_rng_int(r, SF_N_SCENES - 1) >= SF_SCENE_SPACE ? SF_SCENE_CITY
                                                                      : sf_rng_int(r, SF_SCENE_SPACE);
    int s2;
    do s2 = sf_rng_int(r, SF_N_SCENES); while (s2 == s1 || s2 == SF_SCENE_SPACE);
    /* Between 90% and 94% of base images sit in the two usual scenes. */
    double pin = 0.90 + 0.04 * sf_rng_unif(r), share = 0.6 + 0.15 * sf_rng_unif(r);
    skewed(c->prior[SF_ATTR_SCENE], SF_N_SCENES, s1, pin * share, s2, pin * (1 - share));
    c->usual[SF_ATTR_SCENE][0] = s1;
    c->usual[SF_ATTR_SCENE][1] = s2;
    c->n_usual[SF_ATTR_SCENE] = 2;

    int c1 = -1;
    for (size_t i = 0; i < sizeof color_words / sizeof color_words[0] && c1 < 0; i++)
        if (names_contain(cls, color_words[i].word)) c1 = color_words[i].color;
    if (c1 < 0) c1 = sf_rng_int(r, SF_N_COLORS);
    int c2;
    do c2 = sf_rng_int(r, SF_N_COLORS); while (c2 == c1);
    double cin = 0.88 + 0.06 * sf_rng_unif(r);
    skewed(c->prior[SF_ATTR_COLOR], SF_N_COLORS, c1, cin * 0.68, c2, cin * 0.32);
    c->usual[SF_ATTR_COLOR][0] = c1;
    c->usual[SF_ATTR_COLOR][1] = c2;
    c->n_usual[SF_ATTR_COLOR] = 2;

    skewed(c->prior[SF_ATTR_STYLE], SF_N_STYLES, SF_STYLE_PHOTO, 0.97, -1, 0);
    static const double light[] = {0.86, 0.03, 0.05, 0.03, 0.03};
    static const double size[] = {0.08, 0.80, 0.12};
    static const double pos[] = {0.70, 0.075, 0.075, 0.075, 0.075};
    static const double rot[] = {0.86, 0.10, 0.03, 0.01};
    static const double count[] = {0.88, 0.07, 0.03, 0.02};
    static const double occl[] = {0.92, 0.07, 0.01};
    static const double clutter[] = {0.96, 0.04};
    fixed(c->prior[SF_ATTR_LIGHT], light, SF_N_LIGHTS);
    fixed(c->prior[SF_ATTR_SIZE], size, SF_N_SIZES);
    fixed(c->prior[SF_ATTR_POS], pos, SF_N_POSITIONS);
    fixed(c->prior[SF_ATTR_ROT], rot, SF_N_ROTATIONS);
    fixed(c->prior[SF_ATTR_COUNT], count, SF_N_COUNTS);
    fixed(c->prior[SF_ATTR_OCCL], occl, SF_N_OCCLUSIONS);
    fixed(c->prior[SF_ATTR_CLUTTER], clutter, SF_N_CLUTTERS);
    for (int a = 0; a < SF_N_ATTRS; a++) {
        if (a == SF_ATTR_SCENE || a == SF_ATTR_COLOR) continue;
        int best = 0;
        for (int v = 1; v < sf_world_attr_nvalues(a); v++)
            if (c->prior[a][v] > c->prior[a][best]) best = v;
        c->usual[a][0] = best;
        c->n_usual[a] = 1;
    }

    /* The accent colour is another named colour, shaded, so the pattern
     * contrasts with the body whatever colour a caption asks for. */
    int ac;
    do ac = sf_rng_int(r, SF_N_COLORS); while (ac == c1 || ac == c2);
    sf_world__color_rgb(ac, c->accent);
    float k = 0.55f + 0.4f * (float)sf_rng_unif(r);
    for (int i = 0; i < 3; i++) c->accent[i] = (uint8_t)(c->accent[i] * k);
}

int sf_world__class_init(sf_world_class_t *c, const sf_class_t *cls) {
    memset(c, 0, sizeof *c);
    sf_rng_t r = {sf_world__hash_str(cls->wnid[0] ? cls->wnid : cls->name)};
    shape_t s;
    shape_make(&s, &r);
    c->mask = malloc(SF_SHAPE_RES * SF_SHAPE_RES);
    if (!c->mask) return SF_ENOMEM;
    /* Centre the composed shape and scale it to span [-0.95, 0.95]: shapes
     * with short limbs would otherwise render small and lose the details
     * that tell classes apart, and "medium-sized" would mean different
     * things for different classes. */
    float x0 = 9, x1 = -9, y0 = 9, y1 = -9;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            float y = ((float)i + 0.5f) / 64 * 2.6f - 1.3f, x = ((float)j + 0.5f) / 64 * 2.6f - 1.3f;
            if (label_at(&s, x, y) == SF_LAB_BG) continue;
            if (x < x0) x0 = x;
            if (x > x1) x1 = x;
            if (y < y0) y0 = y;
            if (y > y1) y1 = y;
        }
    float mx = (x0 + x1) / 2, my = (y0 + y1) / 2, half = (x1 - x0 > y1 - y0 ? x1 - x0 : y1 - y0) / 2;
    float k = half > 0.05f ? half / 0.95f : 1;
    if (x1 < x0) mx = my = 0;
    for (int i = 0; i < SF_SHAPE_RES; i++) {
        float y = ((float)i + 0.5f) / SF_SHAPE_RES * 2.2f - 1.1f;
        for (int j = 0; j < SF_SHAPE_RES; j++) {
            float x = ((float)j + 0.5f) / SF_SHAPE_RES * 2.2f - 1.1f;
            c->mask[i * SF_SHAPE_RES + j] = (uint8_t)label_at(&s, mx + x * k, my + y * k);
        }
    }
    prior_make(c, cls, &r);
    return 0;
}

void sf_world__class_free(sf_world_class_t *c) {
    free(c->mask);
    c->mask = NULL;
}
