/* render.c: attributes -> RGB image.
 *
 * One pass per layer, each a tight loop over pixels, because the world must
 * render thousands of 64x64 images a second on one core (it stands in for a
 * text-to-image model inside training loops):
 *   1. the scene (sky, ground and the features that make each scene itself),
 *      with texture whose amplitude depends on the style;
 *   2. clutter behind the objects, the objects (sampled from the class's mask
 *      through an affine map), their occluders and clutter in front;
 *   3. lighting/weather, strongly for styles that depict light (photo,
 *      painting, pixel art, embroidery), as a tint for the others;
 *   4. the style, which reinterprets the picture using a per-pixel label
 *      buffer (background, body, pattern, eye, clutter, occluder): pencil
 *      edges and hatching, flat colours and ink outlines, smeared brush
 *      strokes, blocky pixels, satin stitches, ink on skin, paper facets.
 * Every random choice comes from the attributes' seed, so rendering is a pure
 * function of the attributes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "world/internal.h"

#define NG 9  /* value-noise grid: 8x8 cells across the image */

typedef struct {
    uint8_t *rgb;
    uint8_t *lab;
    int W;
    int style;
    float tex;             /* texture amplitude of the scene for this style */
    sf_rng_t rng;
    uint32_t hseed;        /* per-image seed for per-pixel hashes */
    float grid[NG][NG];    /* value noise in [-1, 1] */
    int xi[SF_WORLD_MAX_SIZE];
    float xf[SF_WORLD_MAX_SIZE];
} canvas_t;

static const uint8_t color_table[SF_N_COLORS][3] = {
    {200, 35, 35},   {235, 125, 30},  {240, 210, 40},  {50, 160, 60},
    {40, 80, 200},   {120, 50, 160},  {240, 130, 170}, {120, 75, 40},
    {30, 30, 32},    {240, 240, 235}, {128, 128, 128}, {212, 175, 55},
};

void sf_world__color_rgb(int color, uint8_t out[3]) {
    if (color < 0 || color >= SF_N_COLORS) color = SF_COLOR_GRAY;
    memcpy(out, color_table[color], 3);
}

static inline uint8_t clamp8(float v) {
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)(v + 0.5f);
}

static inline uint32_t phash(uint32_t x, uint32_t y, uint32_t s) {
    uint32_t h = x * 0x8DA6B343u ^ y * 0xD8163841u ^ s * 0xCB1AB31Fu;
    h ^= h >> 13;
    h *= 0x5BD1E995u;
    return h ^ (h >> 15);
}

static inline void put(canvas_t *cv, int i, float r, float g, float b) {
    uint8_t *p = cv->rgb + 3 * i;
    p[0] = clamp8(r);
    p[1] = clamp8(g);
    p[2] = clamp8(b);
}

/* Smooth noise along row y into out[0..W-1], in [-1, 1]. */
static void noise_row(const canvas_t *cv, int y, float *out) {
    float gy = (float)y * (NG - 1) / (float)cv->W;
    int iy = (int)gy;
    float fy = gy - (float)iy, row[NG];
    for (int k = 0; k < NG; k++) row[k] = cv->grid[iy][k] + (cv->grid[iy + 1][k] - cv->grid[iy][k]) * fy;
    for (int x = 0; x < cv->W; x++) {
        int ix = cv->xi[x];
        out[x] = row[ix] + (row[ix + 1] - row[ix]) * cv->xf[x];
    }
}

/* ---- scenes --------------------------------------------------------------- */

/* Sky gradient above the horizon row h, textured ground below it. */
static void sky_ground(canvas_t *cv, int h, const float top[3], const float hor[3],
                       const float g[3], float gamp) {
    int W = cv->W;
    float nz[SF_WORLD_MAX_SIZE];
    for (int y = 0; y < W; y++) {
        uint8_t *p = cv->rgb + 3 * y * W;
        if (y < h) {
            float t = h > 1 ? (float)y / (float)(h - 1) : 1;
            uint8_t r = clamp8(top[0] + (hor[0] - top[0]) * t);
            uint8_t gg = clamp8(top[1] + (hor[1] - top[1]) * t);
            uint8_t b = clamp8(top[2] + (hor[2] - top[2]) * t);
            for (int x = 0; x < W; x++, p += 3) { p[0] = r; p[1] = gg; p[2] = b; }
            continue;
        }
        noise_row(cv, y, nz);
        float depth = 0.8f + 0.3f * (float)(y - h) / (float)(W - h + 1);
        for (int x = 0; x < W; x++, p += 3) {
            float n = nz[x] * gamp * cv->tex;
            float f = (float)(phash(x, y, cv->hseed) & 15) * cv->tex * 0.6f;
            p[0] = clamp8(g[0] * depth + n + f);
            p[1] = clamp8(g[1] * depth + n + f);
            p[2] = clamp8(g[2] * depth + n * 0.6f + f);
        }
    }
}

static void fill_rect(canvas_t *cv, int x0, int y0, int x1, int y1, float r, float g, float b,
                      int lab) {
    int W = cv->W;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > W) x1 = W;
    if (y1 > W) y1 = W;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            put(cv, y * W + x, r, g, b);
            if (lab >= 0) cv->lab[y * W + x] = (uint8_t)lab;
        }
}

static void fill_disc(canvas_t *cv, float cx, float cy, float rx, float ry, float r, float g,
                      float b, float alpha, int lab) {
    int W = cv->W;
    int x0 = (int)(cx - rx), x1 = (int)(cx + rx) + 1, y0 = (int)(cy - ry), y1 = (int)(cy + ry) + 1;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > W) x1 = W;
    if (y1 > W) y1 = W;
    for (int y = y0; y < y1; y++) {
        float dy = ((float)y + 0.5f - cy) / ry;
        for (int x = x0; x < x1; x++) {
            float dx = ((float)x + 0.5f - cx) / rx;
            if (dx * dx + dy * dy > 1) continue;
            uint8_t *p = cv->rgb + 3 * (y * W + x);
            p[0] = clamp8(p[0] + (r - p[0]) * alpha);
            p[1] = clamp8(p[1] + (g - p[1]) * alpha);
            p[2] = clamp8(p[2] + (b - p[2]) * alpha);
            if (lab >= 0) cv->lab[y * W + x] = (uint8_t)lab;
        }
    }
}

/* Horizon row of each scene, as a fraction of the height (0: no sky). */
static const float horizon[SF_N_SCENES] = {
    0.38f, 0.34f, 0.0f, 0.36f, 0.0f, 0.34f, 1.0f, 0.66f, 0.0f, 0.46f, 0.0f, 0.62f};

static void scene_fill(canvas_t *cv, int scene) {
    static const float sky_top[3] = {90, 145, 220}, sky_hor[3] = {175, 205, 238};
    int W = cv->W, h = (int)(horizon[scene] * (float)W);
    float nz[SF_WORLD_MAX_SIZE];
    sf_rng_t *r = &cv->rng;
    switch (scene) {
    case SF_SCENE_GRASS: {
        static const float g[3] = {72, 145, 52};
        sky_ground(cv, h, sky_top, sky_hor, g, 28);
        /* Blades: short dark vertical strokes. */
        for (int y = h + 1; y < W; y++)
            for (int x = 0; x < W; x++)
                if ((phash(x, y / 3, cv->hseed) & 7) == 0) {
                    uint8_t *p = cv->rgb + 3 * (y * W + x);
                    p[0] = (uint8_t)(p[0] * 0.7f); p[1] = (uint8_t)(p[1] * 0.8f); p[2] = (uint8_t)(p[2] * 0.7f);
                }
        break;
    }
    case SF_SCENE_SAND: {
        static const float g[3] = {222, 200, 150};
        sky_ground(cv, h, sky_top, sky_hor, g, 14);
        int sea1 = h + W / 7;
        for (int y = h; y < sea1 && y < W; y++) {
            noise_row(cv, y, nz);
            for (int x = 0; x < W; x++) put(cv, y * W + x, 40, 110 + nz[x] * 12 * cv->tex, 175 + nz[x] * 15 * cv->tex);
        }
        break;
    }
    case SF_SCENE_WATER: {
        float ph = (float)sf_rng_unif(r) * 6.28f, k = 0.45f * 64 / (float)W;
        for (int y = 0; y < W; y++) {
            noise_row(cv, y, nz);
            float t = (float)y / (float)W;
            for (int x = 0; x < W; x++) {
                float wv = sinf((float)y * k * 2.2f + nz[x] * 3 + ph);
                float hi = wv > 0.75f ? 45 * cv->tex + 10 : 0;
                put(cv, y * W + x, 30 + 40 * (1 - t) + hi, 95 + 50 * (1 - t) + hi + nz[x] * 10 * cv->tex,
                    150 + 50 * (1 - t) + hi * 0.8f);
            }
        }
        break;
    }
    case SF_SCENE_SNOW: {
        static const float top[3] = {185, 200, 225}, hor[3] = {220, 228, 240}, g[3] = {238, 242, 250};
        sky_ground(cv, h, top, hor, g, 14);
        break;
    }
    case SF_SCENE_FOREST: {
        int period = W / 5 + 1, off = sf_rng_int(r, period);
        for (int y = 0; y < W; y++) {
            noise_row(cv, y, nz);
            float t = (float)y / (float)W;
            for (int x = 0; x < W; x++) {
                int trunk = ((x + off) % period) < period / 4 + (int)(nz[x] * 2);
                float n = nz[x] * 26 * cv->tex;
                if (t > 0.82f) put(cv, y * W + x, 75 + n, 58 + n, 35);
                else if (trunk && t > 0.25f) put(cv, y * W + x, 85 + n * 0.5f, 58 + n * 0.4f, 36);
                else put(cv, y * W + x, 28 + n * 0.5f, 78 + n + 30 * (1 - t), 36 + n * 0.4f);
            }
        }
        break;
    }
    case SF_SCENE_ROAD: {
        static const float g[3] = {80, 140, 60};
        sky_ground(cv, h, sky_top, sky_hor, g, 20);
        for (int y = h; y < W; y++) {
            float t = (float)(y - h) / (float)(W - h);
            int half = (int)((0.06f + 0.48f * t) * (float)W), c = W / 2;
            int dash = ((y - h) / (W / 10 + 1)) % 2 == 0, lw = 1 + (int)(t * (float)W / 40);
            for (int x = c - half; x < c + half; x++) {
                if (x < 0 || x >= W) continue;
                float n = (float)(phash(x, y, cv->hseed) & 15) * cv->tex;
                if (dash && x >= c - lw && x <= c + lw) put(cv, y * W + x, 230, 200, 50);
                else put(cv, y * W + x, 88 + n, 88 + n, 94 + n);
            }
        }
        break;
    }
    case SF_SCENE_SKY: {
        static const float top[3] = {60, 120, 215}, bot[3] = {165, 200, 240};
        for (int y = 0; y < W; y++) {
            noise_row(cv, y, nz);
            float t = (float)y / (float)W;
            for (int x = 0; x < W; x++) {
                float cl = nz[x] > 0.2f ? (nz[x] - 0.2f) * 2.2f : 0;
                if (cl > 1) cl = 1;
                cl *= 0.4f + 0.6f * cv->tex;
                float rr = top[0] + (bot[0] - top[0]) * t, gg = top[1] + (bot[1] - top[1]) * t,
                      bb = top[2] + (bot[2] - top[2]) * t;
                put(cv, y * W + x, rr + (245 - rr) * cl, gg + (245 - gg) * cl, bb + (248 - bb) * cl);
            }
        }
        break;
    }
    case SF_SCENE_INDOORS: {
        static const float wall[3] = {205, 188, 160}, floor_[3] = {140, 95, 58};
        sky_ground(cv, h, wall, wall, floor_, 10);
        int plank = W / 8 + 1;
        for (int y = h; y < W; y += plank) fill_rect(cv, 0, y, W, y + 1, 95, 62, 38, -1);
        int wx = (int)((0.1 + 0.5 * sf_rng_unif(r)) * W);
        fill_rect(cv, wx, W / 8, wx + W / 4, W / 8 + W / 4, 170, 210, 240, -1);
        fill_rect(cv, wx + W / 8, W / 8, wx + W / 8 + 1, W / 8 + W / 4, 240, 240, 235, -1);
        break;
    }
    case SF_SCENE_CAVE: {
        for (int y = 0; y < W; y++) {
            noise_row(cv, y, nz);
            float dy = (float)y / (float)W - 0.45f;
            for (int x = 0; x < W; x++) {
                float dx = (float)x / (float)W - 0.5f;
                float v = 1.0f - 1.6f * (dx * dx + dy * dy);
                float n = nz[x] * 30 * cv->tex;
                put(cv, y * W + x, (68 + n) * v, (58 + n) * v, (50 + n * 0.8f) * v);
            }
        }
        break;
    }
    case SF_SCENE_DESERT: {
        static const float top[3] = {120, 170, 225}, hor[3] = {215, 215, 220};
        float ph = (float)sf_rng_unif(r) * 6.28f;
        for (int y = 0; y < W; y++) {
            noise_row(cv, y, nz);
            for (int x = 0; x < W; x++) {
                float hx = (float)h + 0.05f * (float)W * sinf((float)x * 6.28f / (float)W * 1.5f + ph);
                if ((float)y < hx) {
                    float t = (float)y / hx;
                    put(cv, y * W + x, top[0] + (hor[0] - top[0]) * t, top[1] + (hor[1] - top[1]) * t,
                        top[2] + (hor[2] - top[2]) * t);
                } else {
                    float sh = sinf((float)x * 0.2f * 64 / (float)W + (float)y * 0.05f + ph) * 14 * cv->tex;
                    float n = nz[x] * 12 * cv->tex;
                    put(cv, y * W + x, 228 + sh + n, 168 + sh + n, 98 + sh * 0.5f);
                }
            }
        }
        break;
    }
    case SF_SCENE_SPACE: {
        for (int y = 0; y < W; y++)
            for (int x = 0; x < W; x++) {
                uint32_t hh = phash(x, y, cv->hseed);
                float s = (hh & 63) == 0 ? 150.0f + (float)((hh >> 8) & 100) : 0;
                put(cv, y * W + x, 6 + s, 6 + s, 20 + s);
            }
        float px = (float)(0.15 + 0.7 * sf_rng_unif(r)) * (float)W, py = (float)W * 0.2f;
        fill_disc(cv, px, py, (float)W * 0.13f, (float)W * 0.13f, 180, 120, 80, 1, -1);
        fill_disc(cv, px - (float)W * 0.04f, py - (float)W * 0.03f, (float)W * 0.06f, (float)W * 0.05f,
                  215, 160, 110, 0.7f, -1);
        break;
    }
    case SF_SCENE_CITY: {
        static const float top[3] = {140, 165, 200}, hor[3] = {195, 205, 215}, g[3] = {78, 78, 82};
        sky_ground(cv, W, top, hor, g, 0);
        int bw = W / 6 + 1, street = (int)(0.8f * (float)W);
        for (int b = 0; b * bw < W; b++) {
            int top_y = (int)((0.15 + 0.4 * sf_rng_unif(r)) * W);
            float gcol = 95 + 45 * (float)sf_rng_unif(r);
            fill_rect(cv, b * bw, top_y, b * bw + bw - 1, street, gcol, gcol, gcol + 8, -1);
            for (int y = top_y + 2; y < street - 2; y += 4)
                for (int x = b * bw + 2; x < b * bw + bw - 3; x += 4)
                    if (phash(x, y, cv->hseed) & 1) fill_rect(cv, x, y, x + 2, y + 2, 230, 215, 140, -1);
        }
        fill_rect(cv, 0, street, W, W, 70, 70, 74, -1);
        break;
    }
    }
}

/* ---- objects -------------------------------------------------------------- */

/* Facet brightness for origami: a folded look from the sign pattern of the
 * object-frame coordinates. */
static const float facet[8] = {1.12f, 0.86f, 0.97f, 0.74f, 1.05f, 0.80f, 0.92f, 0.68f};

static void draw_object(canvas_t *cv, const sf_world_class_t *k, float cx, float cy, float R,
                        float ang, const uint8_t col[3], const uint8_t acc[3]) {
    int W = cv->W;
    float ext = R * 1.56f;
    int x0 = (int)(cx - ext), x1 = (int)(cx + ext) + 1, y0 = (int)(cy - ext), y1 = (int)(cy + ext) + 1;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > W) x1 = W;
    if (y1 > W) y1 = W;
    float c = cosf(ang) / R, s = sinf(ang) / R;
    const float sc = SF_SHAPE_RES / 2.2f;
    int flat = cv->style == SF_STYLE_CARTOON || cv->style == SF_STYLE_SKETCH ||
               cv->style == SF_STYLE_TATTOO || cv->style == SF_STYLE_EMBROIDERY;
    int origami = cv->style == SF_STYLE_ORIGAMI;
    for (int y = y0; y < y1; y++) {
        float dy = (float)y + 0.5f - cy, dx = (float)x0 + 0.5f - cx;
        float u = c * dx + s * dy, v = -s * dx + c * dy;
        float shade = 1.22f - 0.5f * (dy + R) / (2 * R);
        for (int x = x0; x < x1; x++, u += c, v -= s) {
            int mj = (int)((u + 1.1f) * sc), mi = (int)((v + 1.1f) * sc);
            if ((unsigned)mj >= SF_SHAPE_RES || (unsigned)mi >= SF_SHAPE_RES) continue;
            int L = k->mask[mi * SF_SHAPE_RES + mj];
            if (L == SF_LAB_BG) continue;
            int i = y * W + x;
            const uint8_t *base = L == SF_LAB_BODY ? col : acc;
            float r, g, b;
            if (L == SF_LAB_DETAIL) {
                r = g = b = 22;
                if (col[0] + col[1] + col[2] < 150) r = g = b = 235;  /* an eye must show on black */
            } else {
                r = base[0]; g = base[1]; b = base[2];
            }
            if (origami) {
                float f = facet[(u > 0) + 2 * (v > 0) + 4 * (u > v)];
                r *= f; g *= f; b *= f;
            } else if (!flat && L != SF_LAB_DETAIL) {
                float n = (float)((int)(phash(x, y, cv->hseed) & 15) - 8) * cv->tex;
                r = r * shade + n; g = g * shade + n; b = b * shade + n;
            }
            put(cv, i, r, g, b);
            cv->lab[i] = (uint8_t)L;
        }
    }
}

static const float size_radius[SF_N_SIZES] = {0.15f, 0.29f, 0.43f};
static const float pos_xy[SF_N_POSITIONS][2] = {
    {0.5f, 0.55f}, {0.27f, 0.55f}, {0.73f, 0.55f}, {0.5f, 0.3f}, {0.5f, 0.76f}};

/* Occluder colours by scene: what would plausibly stand in front. */
static const uint8_t occluder_rgb[SF_N_SCENES][3] = {
    {45, 105, 40},  {150, 140, 122}, {35, 85, 140}, {232, 236, 246}, {88, 60, 36}, {150, 40, 35},
    {245, 245, 250}, {170, 128, 80}, {82, 72, 62},  {175, 112, 70},  {92, 92, 96}, {128, 128, 134}};

static void draw_occluder(canvas_t *cv, int scene, float cx, float cy, float R, int level) {
    float frac = level == SF_OCCL_HEAVY ? 0.62f : 0.4f;
    float ext = R * 1.0f;
    int side = sf_rng_int(&cv->rng, 4);
    float x0 = cx - ext, x1 = cx + ext, y0 = cy - ext, y1 = cy + ext;
    switch (side) {
    case 0: x1 = x0 + 2 * ext * frac; break;
    case 1: x0 = x1 - 2 * ext * frac; break;
    case 2: y0 = y1 - 2 * ext * frac; break;
    default: y1 = y0 + 2 * ext * frac; break;
    }
    const uint8_t *c = occluder_rgb[scene];
    int W = cv->W;
    int ix0 = x0 < 0 ? 0 : (int)x0, ix1 = x1 > W ? W : (int)x1;
    int iy0 = y0 < 0 ? 0 : (int)y0, iy1 = y1 > W ? W : (int)y1;
    for (int y = iy0; y < iy1; y++)
        for (int x = ix0; x < ix1; x++) {
            int edge = x == ix0 || x == ix1 - 1 || y == iy0 || y == iy1 - 1;
            float n = (float)((int)(phash(x, y, cv->hseed ^ 77) & 31) - 16) * cv->tex;
            float k = edge ? 0.6f : 1.0f;
            put(cv, y * W + x, c[0] * k + n, c[1] * k + n, c[2] * k + n);
            cv->lab[y * W + x] = SF_LAB_OCCLUDER;
        }
}

static void draw_clutter(canvas_t *cv, int n, float maxr) {
    int W = cv->W;
    for (int i = 0; i < n; i++) {
        float x = (float)sf_rng_unif(&cv->rng) * (float)W, y = (float)sf_rng_unif(&cv->rng) * (float)W;
        float rr = (0.03f + maxr * (float)sf_rng_unif(&cv->rng)) * (float)W;
        uint8_t c[3];
        sf_world__color_rgb(sf_rng_int(&cv->rng, SF_N_COLORS), c);
        if (sf_rng_int(&cv->rng, 2))
            fill_disc(cv, x, y, rr, rr * 0.7f, c[0], c[1], c[2], 1, SF_LAB_CLUTTER);
        else
            fill_rect(cv, (int)(x - rr), (int)(y - rr * 0.5f), (int)(x + rr), (int)(y + rr * 0.5f), c[0],
                      c[1], c[2], SF_LAB_CLUTTER);
    }
}

static const float rot_angle[SF_N_ROTATIONS] = {0.0f, 0.6f, 1.5708f, 3.14159f};

static void draw_objects(canvas_t *cv, const sf_world_t *w, const sf_world_attrs_t *a) {
    const sf_world_class_t *k = &w->cls[a->cls];
    float Wf = (float)cv->W;
    uint8_t col[3];
    sf_world__color_rgb(a->v[SF_ATTR_COLOR], col);
    const uint8_t *acc = k->accent;
    uint8_t acc2[3];
    /* A pattern the same shade as the body would vanish: darken it then. */
    if (abs(acc[0] - col[0]) + abs(acc[1] - col[1]) + abs(acc[2] - col[2]) < 90) {
        for (int i = 0; i < 3; i++) acc2[i] = (uint8_t)(col[i] > 128 ? col[i] * 0.45f : col[i] * 0.5f + 120);
        acc = acc2;
    }
    int n = 1;
    float R = size_radius[a->v[SF_ATTR_SIZE]] * Wf;
    switch (a->v[SF_ATTR_COUNT]) {
    case SF_COUNT_TWO: n = 2; R *= 0.7f; break;
    case SF_COUNT_THREE: n = 3; R *= 0.58f; break;
    case SF_COUNT_MANY: n = 5 + sf_rng_int(&cv->rng, 3); R *= 0.42f; break;
    }
    float bx = pos_xy[a->v[SF_ATTR_POS]][0] * Wf + (float)(sf_rng_unif(&cv->rng) - 0.5) * 0.06f * Wf;
    float by = pos_xy[a->v[SF_ATTR_POS]][1] * Wf + (float)(sf_rng_unif(&cv->rng) - 0.5) * 0.06f * Wf;
    float ang = rot_angle[a->v[SF_ATTR_ROT]] + (float)(sf_rng_unif(&cv->rng) - 0.5) * 0.25f;
    if (a->v[SF_ATTR_ROT] == SF_ROT_TILTED && sf_rng_int(&cv->rng, 2)) ang = -ang;
    int ground = a->v[SF_ATTR_SCENE] != SF_SCENE_SKY && a->v[SF_ATTR_SCENE] != SF_SCENE_WATER &&
                 a->v[SF_ATTR_SCENE] != SF_SCENE_SPACE;
    for (int i = 0; i < n; i++) {
        float cx = bx, cy = by;
        if (n == 2) cx += (i ? 1 : -1) * R * 1.05f;
        else if (n == 3) {
            static const float o[3][2] = {{-1.05f, 0.45f}, {1.05f, 0.45f}, {0, -0.75f}};
            cx += o[i][0] * R; cy += o[i][1] * R;
        } else if (n > 3) {
            cx = (0.12f + 0.76f * (float)sf_rng_unif(&cv->rng)) * Wf;
            cy = (0.2f + 0.65f * (float)sf_rng_unif(&cv->rng)) * Wf;
        }
        float ai = ang + (n > 1 ? (float)(sf_rng_unif(&cv->rng) - 0.5) * 0.3f : 0);
        if (ground && cv->style == SF_STYLE_PHOTO)
            fill_disc(cv, cx, cy + 0.8f * R, 0.85f * R, 0.2f * R, 0, 0, 0, 0.35f, -1);
        draw_object(cv, k, cx, cy, R, ai, col, acc);
        if (a->v[SF_ATTR_OCCL] != SF_OCCL_NONE && (i == 0 || n <= 3))
            draw_occluder(cv, a->v[SF_ATTR_SCENE], cx, cy, R, a->v[SF_ATTR_OCCL]);
    }
}

/* ---- lighting ----------------------------------------------------------- */

static void lighting(canvas_t *cv, int light, float s) {
    int N = cv->W * cv->W, W = cv->W;
    uint8_t *p = cv->rgb;
    switch (light) {
    case SF_LIGHT_NIGHT:
        for (int i = 0; i < N; i++, p += 3) {
            float k = cv->lab[i] >= SF_LAB_BODY && cv->lab[i] <= SF_LAB_DETAIL ? 0.8f * s : s;
            p[0] = clamp8(p[0] * (1 - 0.72f * k));
            p[1] = clamp8(p[1] * (1 - 0.66f * k));
            p[2] = clamp8(p[2] * (1 - 0.45f * k) + 12 * k);
        }
        break;
    case SF_LIGHT_SUNSET:
        for (int i = 0; i < N; i++, p += 3) {
            float y = (float)(i / W) / (float)W;
            p[0] = clamp8(p[0] * (1 + 0.1f * s) + 40 * s * (1 - y));
            p[1] = clamp8(p[1] * (1 - 0.18f * s) + 8 * s);
            p[2] = clamp8(p[2] * (1 - 0.45f * s));
        }
        break;
    case SF_LIGHT_FOG:
        for (int i = 0; i < N; i++, p += 3) {
            float y = (float)(i / W) / (float)W, k = s * (0.72f - 0.25f * y);
            p[0] = clamp8(p[0] + (200 - p[0]) * k);
            p[1] = clamp8(p[1] + (203 - p[1]) * k);
            p[2] = clamp8(p[2] + (208 - p[2]) * k);
        }
        break;
    case SF_LIGHT_RAIN: {
        int per = W / 9 + 3;
        for (int i = 0; i < N; i++, p += 3) {
            int x = i % W, y = i / W;
            int streak = ((x + y / 2) % per == 0) && (phash(x, y / 5, cv->hseed) & 3) != 0;
            float add = streak ? 70 * s : 0;
            p[0] = clamp8(p[0] * (1 - 0.3f * s) + add);
            p[1] = clamp8(p[1] * (1 - 0.27f * s) + add);
            p[2] = clamp8(p[2] * (1 - 0.18f * s) + add);
        }
        break;
    }
    default: break;
    }
}

/* ---- styles -------------------------------------------------------------- */

static inline int is_obj(int L) { return L >= SF_LAB_BODY && L <= SF_LAB_DETAIL; }
static inline int lum(const uint8_t *p) { return (p[0] * 77 + p[1] * 150 + p[2] * 29) >> 8; }

/* 1 if the pixel borders a pixel of another label class (object vs not). */
static inline int boundary(const canvas_t *cv, int x, int y) {
    int W = cv->W, i = y * W + x, L = cv->lab[i], o = is_obj(L) || L == SF_LAB_OCCLUDER;
    if (x + 1 < W && (is_obj(cv->lab[i + 1]) || cv->lab[i + 1] == SF_LAB_OCCLUDER) != o) return 1;
    if (y + 1 < W && (is_obj(cv->lab[i + W]) || cv->lab[i + W] == SF_LAB_OCCLUDER) != o) return 1;
    if (x > 0 && (is_obj(cv->lab[i - 1]) || cv->lab[i - 1] == SF_LAB_OCCLUDER) != o) return 1;
    if (y > 0 && (is_obj(cv->lab[i - W]) || cv->lab[i - W] == SF_LAB_OCCLUDER) != o) return 1;
    return 0;
}

static void style_photo(canvas_t *cv) {
    int N = cv->W * cv->W;
    uint8_t *p = cv->rgb;
    for (int i = 0; i < N; i++, p += 3) {
        int n = (int)(phash((uint32_t)i, 7, cv->hseed) & 7) - 4;
        p[0] = clamp8(p[0] + n); p[1] = clamp8(p[1] + n); p[2] = clamp8(p[2] + n);
    }
}

static void style_sketch(canvas_t *cv) {
    int W = cv->W;
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            uint8_t *p = cv->rgb + 3 * i;
            int L0 = lum(p);
            int Lr = x + 1 < W ? lum(p + 3) : L0, Ld = y + 1 < W ? lum(p + 3 * W) : L0;
            float v = 246 - 1.7f * (float)(abs(L0 - Lr) + abs(L0 - Ld));
            if (boundary(cv, x, y)) v -= 150;
            if (cv->lab[i] == SF_LAB_DETAIL) v -= 120;
            if (is_obj(cv->lab[i]) && ((x + y) & 3) == 0) {
                /* Hatching in coloured pencil: the sketch keeps a hint of the
                 * object's colour, as sketches in ImageNet-R often do. */
                float k = 0.55f;
                put(cv, i, p[0] * k + v * (1 - k) * 0.6f, p[1] * k + v * (1 - k) * 0.6f,
                    p[2] * k + v * (1 - k) * 0.6f);
                continue;
            }
            put(cv, i, v, v * 0.98f, v * 0.92f);
        }
}

static void style_cartoon(canvas_t *cv) {
    int W = cv->W;
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            uint8_t *p = cv->rgb + 3 * i;
            if (boundary(cv, x, y)) { p[0] = p[1] = p[2] = 15; continue; }
            float m = (float)(p[0] + p[1] + p[2]) / 3;
            for (int c = 0; c < 3; c++) {
                float v = m + ((float)p[c] - m) * 1.5f;
                int q = (int)(clamp8(v)) / 52;  /* 5 flat levels */
                p[c] = (uint8_t)(q * 255 / 4);
            }
        }
}

static void style_painting(canvas_t *cv, uint8_t *tmp) {
    int W = cv->W, N = W * W;
    memcpy(tmp, cv->rgb, (size_t)N * 3);
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            uint32_t h = phash((uint32_t)x / 3, (uint32_t)y / 3, cv->hseed);
            int dx = (int)(h & 3) - 1, dy = (int)((h >> 2) & 3) - 1;
            float acc[3] = {0, 0, 0};
            for (int k = -1; k <= 1; k++) {
                int sx = x + k * dx, sy = y + k * dy;
                if (sx < 0) sx = 0;
                if (sx >= W) sx = W - 1;
                if (sy < 0) sy = 0;
                if (sy >= W) sy = W - 1;
                const uint8_t *q = tmp + 3 * (sy * W + sx);
                acc[0] += q[0]; acc[1] += q[1]; acc[2] += q[2];
            }
            float canvas = (float)(((x ^ y) & 1) * 10) - 5;
            uint8_t *p = cv->rgb + 3 * (y * W + x);
            for (int c = 0; c < 3; c++) {
                int v = (int)(acc[c] / 3) / 32 * 32 + 16;  /* a painter's limited mixing */
                p[c] = clamp8((float)v + canvas + (c == 0 ? 10 : c == 1 ? 4 : -8));
            }
        }
}

static void style_pixel(canvas_t *cv) {
    int W = cv->W, b = W / 16 < 2 ? 2 : W / 16;
    for (int by = 0; by < W; by += b)
        for (int bx = 0; bx < W; bx += b) {
            int s[3] = {0, 0, 0}, n = 0;
            for (int y = by; y < by + b && y < W; y++)
                for (int x = bx; x < bx + b && x < W; x++, n++) {
                    const uint8_t *p = cv->rgb + 3 * (y * W + x);
                    s[0] += p[0]; s[1] += p[1]; s[2] += p[2];
                }
            uint8_t q[3];
            for (int c = 0; c < 3; c++) {
                float v = (float)s[c] / (float)n;
                v = (v - 128) * 1.25f + 128;
                q[c] = (uint8_t)(((int)clamp8(v) + 25) / 51 * 51);  /* a 216-colour palette */
            }
            for (int y = by; y < by + b && y < W; y++)
                for (int x = bx; x < bx + b && x < W; x++) memcpy(cv->rgb + 3 * (y * W + x), q, 3);
        }
}

static void style_embroidery(canvas_t *cv) {
    int W = cv->W;
    static const float cloth[3] = {236, 226, 204};
    /* The work sits in a wooden hoop on a dark table: the frame says
     * "embroidery" even where the stitches are too small to read. */
    float c = (float)W / 2, r_in = 0.46f * (float)W, r_out = 0.5f * (float)W;
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            uint8_t *p = cv->rgb + 3 * i;
            int L = cv->lab[i];
            float dx = (float)x + 0.5f - c, dy = (float)y + 0.5f - c, d2 = dx * dx + dy * dy;
            if (d2 > r_out * r_out) { put(cv, i, 70, 50, 38); continue; }
            if (d2 > r_in * r_in) { put(cv, i, 196, 150, 96); continue; }
            if (!is_obj(L) && L != SF_LAB_OCCLUDER) {
                float weave = ((x + y) & 1) ? 0.93f : 1.0f;
                put(cv, i, (cloth[0] * 0.7f + p[0] * 0.3f) * weave, (cloth[1] * 0.7f + p[1] * 0.3f) * weave,
                    (cloth[2] * 0.7f + p[2] * 0.3f) * weave);
                continue;
            }
            if (boundary(cv, x, y)) { put(cv, i, p[0] * 0.4f, p[1] * 0.4f, p[2] * 0.4f); continue; }
            int ph = (x + y + (L == SF_LAB_PATTERN ? 2 : 0)) % 4;
            float m = ph == 0 ? 0.62f : ph == 1 ? 1.15f : ph == 2 ? 1.0f : 0.9f;
            put(cv, i, p[0] * m + 8, p[1] * m + 8, p[2] * m + 8);
        }
}

static void style_tattoo(canvas_t *cv) {
    int W = cv->W;
    static const float skin[3] = {228, 186, 156};
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            uint8_t *p = cv->rgb + 3 * i;
            int L = cv->lab[i];
            float n = (float)((int)(phash(x, y, cv->hseed) & 7) - 4);
            if (boundary(cv, x, y)) { put(cv, i, 28, 30, 40); continue; }
            if (!is_obj(L) && L != SF_LAB_OCCLUDER) {
                put(cv, i, skin[0] * 0.88f + p[0] * 0.12f + n, skin[1] * 0.88f + p[1] * 0.12f + n,
                    skin[2] * 0.88f + p[2] * 0.12f + n);
                continue;
            }
            if (L == SF_LAB_DETAIL || (L == SF_LAB_PATTERN && (x + y) % 3 == 0)) {
                put(cv, i, 35, 38, 50);
                continue;
            }
            /* Ink multiplies the skin: saturated colours go dark and muted. */
            put(cv, i, skin[0] * p[0] / 255.0f * 0.9f + n, skin[1] * p[1] / 255.0f * 0.9f + n,
                skin[2] * p[2] / 255.0f * 0.95f + n);
        }
}

static void style_origami(canvas_t *cv) {
    int W = cv->W;
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            uint8_t *p = cv->rgb + 3 * i;
            int L = cv->lab[i];
            if (boundary(cv, x, y) && (is_obj(L) || L == SF_LAB_OCCLUDER)) {
                put(cv, i, p[0] * 0.6f, p[1] * 0.6f, p[2] * 0.6f);
                continue;
            }
            if (is_obj(L)) continue;
            float crease = ((x + 2 * y) % (W / 2 + 1) == 0) ? 0.9f : 1.0f;
            put(cv, i, (p[0] * 0.5f + 122) * crease, (p[1] * 0.5f + 118) * crease,
                (p[2] * 0.5f + 112) * crease);
        }
}

/* Texture amplitude of the scene per style: flat styles get flat scenes. */
static const float style_tex[SF_N_STYLES] = {1.0f, 0.6f, 0.0f, 0.7f, 0.5f, 0.3f, 0.0f, 0.0f};
/* How strongly lighting applies before the style reinterprets the image. */
static const float style_light[SF_N_STYLES] = {1.0f, 0.7f, 0.0f, 1.0f, 1.0f, 0.8f, 0.0f, 0.0f};
static const float style_tint[SF_N_STYLES] = {0.0f, 0.35f, 0.6f, 0.0f, 0.0f, 0.3f, 0.5f, 0.6f};

int sf_world_render(const sf_world_t *w, const sf_world_attrs_t *a, uint8_t *rgb) {
    static const int nv[SF_N_ATTRS] = {SF_N_STYLES, SF_N_SCENES, SF_N_LIGHTS, SF_N_COLORS, SF_N_SIZES,
                                       SF_N_POSITIONS, SF_N_ROTATIONS, SF_N_COUNTS, SF_N_OCCLUSIONS,
                                       SF_N_CLUTTERS};
    if (!w || !a || !rgb) return SF_EINVAL;
    if (a->cls < -1 || a->cls >= w->classes->n) return SF_EINVAL;
    for (int i = 0; i < SF_N_ATTRS; i++)
        if (a->v[i] < 0 || a->v[i] >= nv[i]) return SF_EINVAL;
    canvas_t cv;
    uint8_t lab[SF_WORLD_MAX_SIZE * SF_WORLD_MAX_SIZE];
    cv.rgb = rgb;
    cv.lab = lab;
    cv.W = w->size;
    cv.style = a->v[SF_ATTR_STYLE];
    cv.tex = style_tex[cv.style];
    cv.rng.s = sf_world__mix(a->seed ^ 0x5eedf00dull);
    cv.hseed = (uint32_t)sf_rng_next(&cv.rng);
    for (int i = 0; i < NG; i++)
        for (int j = 0; j < NG; j++) cv.grid[i][j] = (float)sf_rng_unif(&cv.rng) * 2 - 1;
    for (int x = 0; x < cv.W; x++) {
        float gx = (float)x * (NG - 1) / (float)cv.W;
        cv.xi[x] = (int)gx;
        cv.xf[x] = gx - (float)cv.xi[x];
    }
    memset(lab, 0, (size_t)cv.W * (size_t)cv.W);
    scene_fill(&cv, a->v[SF_ATTR_SCENE]);
    int clutter = a->v[SF_ATTR_CLUTTER] == SF_CLUTTER_SOME;
    if (clutter) draw_clutter(&cv, 7 + sf_rng_int(&cv.rng, 5), 0.07f);
    if (a->cls >= 0) draw_objects(&cv, w, a);
    if (clutter) draw_clutter(&cv, 2 + sf_rng_int(&cv.rng, 2), 0.04f);
    if (style_light[cv.style] > 0) lighting(&cv, a->v[SF_ATTR_LIGHT], style_light[cv.style]);
    switch (cv.style) {
    case SF_STYLE_PHOTO: style_photo(&cv); break;
    case SF_STYLE_SKETCH: style_sketch(&cv); break;
    case SF_STYLE_CARTOON: style_cartoon(&cv); break;
    case SF_STYLE_PAINTING: {
        static __thread uint8_t tmp[SF_WORLD_MAX_SIZE * SF_WORLD_MAX_SIZE * 3];
        style_painting(&cv, tmp);
        break;
    }
    case SF_STYLE_PIXEL: style_pixel(&cv); break;
    case SF_STYLE_EMBROIDERY: style_embroidery(&cv); break;
    case SF_STYLE_TATTOO: style_tattoo(&cv); break;
    case SF_STYLE_ORIGAMI: style_origami(&cv); break;
    }
    if (style_tint[cv.style] > 0) lighting(&cv, a->v[SF_ATTR_LIGHT], style_tint[cv.style]);
    return 0;
}
