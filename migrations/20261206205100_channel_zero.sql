-- Channel 0: the code of the API's own example ticket (the docs: "other numbers: other
-- channels"). Labelled, so channel charts show a name instead of "other (0)".
INSERT INTO ticket_channel_codes (code, label_en_us, label_zh_cn)
VALUES (0, 'other channels', '其他渠道')
ON CONFLICT (code) DO NOTHING;
